# Stand-in for gcr.io/distroless/static-debian12:nonroot: no shell and no
# package manager, only CA certificates, time zones, /etc/passwd with the
# nonroot user (65532), /tmp and the user's home, as distroless has them.
ARG BASE=pollgrid-standin/debian:bookworm
FROM ${BASE} AS files
RUN mkdir -p /out/etc/ssl/certs /out/tmp /out/home/nonroot \
 && chmod 1777 /out/tmp && chmod 700 /out/home/nonroot && chown 65532:65532 /out/home/nonroot \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
      'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > /out/etc/passwd \
 && printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' > /out/etc/group

FROM scratch
COPY --from=files /out/ /
COPY --from=files /usr/share/zoneinfo /usr/share/zoneinfo
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /home/nonroot
