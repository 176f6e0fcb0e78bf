# Stand-in for nats:<version>-alpine: nats-server built from its Go module at
# the version docker-compose.yml names (the context holds it), on the Debian
# root filesystem (wget for the compose healthcheck). The official image's
# entrypoint runs nats-server with the arguments of `command:`, as here.
ARG BASE=pollgrid-standin/debian:bookworm
FROM ${BASE}
COPY nats-server /usr/local/bin/nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT ["nats-server"]
