# One image per service, from one Dockerfile (make images builds the three
# services and pollctl, which applies connectors from a compose one-shot or a
# Kubernetes Job):
#   docker build --build-arg SERVICE=worker --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse --short HEAD) -t pollgrid/worker .
# The build needs nothing but the Go module proxy and a BuildKit builder (for
# RUN --mount); the runtime image is distroless (CA certificates and tzdata,
# no shell) and runs as non-root. No "# syntax=" line: it would make every
# build fetch the Dockerfile frontend from Docker Hub, which an engine without
# a registry, or behind a mirror, cannot do (make compose-test builds so).

ARG GO_IMAGE=golang:1.26.8-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# Module files first: the download layer is cached until a go.mod/go.sum changes.
COPY go.work go.work.sum ./
COPY pkg/go.mod pkg/go.sum pkg/
COPY proto/go.mod proto/go.sum proto/
COPY services/scheduler/go.mod services/scheduler/go.sum services/scheduler/
COPY services/worker/go.mod services/worker/go.sum services/worker/
COPY services/aggregator/go.mod services/aggregator/go.sum services/aggregator/
COPY services/devstack/go.mod services/devstack/go.sum services/devstack/
COPY services/pollctl/go.mod services/pollctl/go.sum services/pollctl/
COPY test/go.mod test/go.sum test/
ARG SERVICE=worker
# The workspace's module graph, then the modules this service builds with
# (not "go mod download" of the whole workspace: that would fetch every test
# dependency of every dependency too).
RUN --mount=type=cache,target=/go/pkg/mod \
    go list -m all >/dev/null && (cd services/${SERVICE} && GOWORK=off go mod download)
COPY pkg/ pkg/
COPY proto/ proto/
COPY services/ services/
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X github.com/pollgrid/pollgrid/pkg/service.Version=${VERSION} -X github.com/pollgrid/pollgrid/pkg/service.Commit=${COMMIT} -X github.com/pollgrid/pollgrid/pkg/upstream.Version=${VERSION}" \
      -o /out/pollgrid ./services/${SERVICE}

FROM ${RUNTIME_IMAGE}
ARG SERVICE=worker
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="pollgrid-${SERVICE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="https://github.com/pollgrid/pollgrid"
# The binary is /usr/local/bin/pollgrid in every image, pollctl's too (an
# exec-form ENTRYPOINT cannot name it after SERVICE). No connectors file is
# baked in: a service started with none serves what the catalog holds
# (pollctl apply fills it), and one started with a file would own the
# catalog and prune what was applied around it.
COPY --from=build /out/pollgrid /usr/local/bin/pollgrid
# 65532 is distroless's "nonroot" user.
USER 65532:65532
# -probe with a path asks the service's own HTTP_ADDR (default port per
# service); pollctl has no endpoint: it runs once, its container's
# healthcheck is turned off where it runs (docker-compose.yml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/pollgrid", "-probe", "/healthz"]
ENTRYPOINT ["/usr/local/bin/pollgrid"]
