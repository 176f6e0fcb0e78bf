# Stand-in for prom/prometheus:<version>: Debian's prometheus (installed in
# the Debian root filesystem), laid out as the official image: the binary is
# the entrypoint, it runs as nobody in /prometheus.
ARG BASE=pollgrid-standin/debian:bookworm
FROM ${BASE}
RUN mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
VOLUME /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
