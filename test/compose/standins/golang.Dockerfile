# Stand-in for golang:<version>-bookworm: the Debian root filesystem with the
# host's Go toolchain, set up as the official image sets it up. The context
# holds the toolchain as go/ and the host's CA bundle, so that the build
# stage reaches the Go module proxy as the host does (through a proxy of
# the host's network that re-signs TLS too).
ARG BASE=pollgrid-standin/debian:bookworm
FROM ${BASE}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY go /usr/local/go
ENV GOTOOLCHAIN=local GOPATH=/go \
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
