# Stand-in for redis:<version>-alpine: Debian's redis-server and redis-cli
# (installed in the Debian root filesystem), started the way the official
# image starts it (redis-entrypoint.sh).
ARG BASE=pollgrid-standin/debian:bookworm
FROM ${BASE}
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN mkdir -p /data && chown redis:redis /data
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
