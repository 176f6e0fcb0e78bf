# pollgrid — run `make help` for the targets.
SHELL := /bin/bash
MODULES := pkg proto services/scheduler services/worker services/aggregator services/devstack services/pollctl test
SERVICES := scheduler worker aggregator devstack pollctl
BUF_VERSION := v1.75.0
GO_TEST_FLAGS ?= -race -count=1 -timeout 15m
# VERSION and COMMIT are baked into the binaries, as the Dockerfile does:
# -version prints them, and upstream.Version is the User-Agent's
# ("pollgrid/<VERSION>"), so a release never calls upstreams as pollgrid/dev.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/pollgrid/pollgrid/pkg/service.Version=$(VERSION) -X github.com/pollgrid/pollgrid/pkg/service.Commit=$(COMMIT) -X github.com/pollgrid/pollgrid/pkg/upstream.Version=$(VERSION)

.PHONY: help build run test bench proto lint redis-server chromium clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build every service and pollctl into bin/, VERSION and COMMIT baked in
	@mkdir -p bin
	@for s in $(SERVICES); do echo "go build bin/$$s ($(VERSION))"; go build -ldflags "$(LDFLAGS)" -o bin/$$s ./services/$$s || exit 1; done

# Built, then exec'd (not go run, which exits 1 when Ctrl-C interrupts it),
# so that Ctrl-C stops the stack cleanly and make exits 0.
run: ## the whole stack in one process (embedded NATS + Redis store); NATS_URL / REDIS_URL use real servers
	@mkdir -p bin && go build -ldflags "$(LDFLAGS)" -o bin/devstack ./services/devstack && exec bin/devstack

test: redis-server chromium ## every test of every module, with -race (installs redis-server and chromium if missing)
	@set -e; for m in $(MODULES); do echo "== go test $$m"; (cd $$m && POLLGRID_REQUIRE_BROWSER=1 go test $(GO_TEST_FLAGS) ./...); done

# BENCH picks what runs: e2e, scheduler, startup, scale, failover (the process-level
# suite in test/bench) and micro (the go micro-benchmarks), comma-separated;
# default all. BENCH_QUICK=1: short windows, one repetition (development).
# More knobs (BENCH_REPS, BENCH_SCALE, BENCH_OUT, BENCH_QUIET_WAIT): docs/benchmarks.md.
bench: redis-server ## benchmarks, results into docs/benchmarks.md (BENCH=e2e,scheduler,startup,scale,failover,micro BENCH_QUICK=1)
	@set -e; case ",$(BENCH)," in ,,|*,all,*|*,micro,*) \
		for m in pkg test; do (cd $$m && go test -run '^$$' -bench . -benchmem ./...); done;; esac
	@set -e; if [ "$(BENCH)" != micro ]; then \
		cd test && go test -tags bench -run TestBench -count=1 -timeout 3h -v ./bench; fi

proto: ## regenerate proto/pollgrid/v1/*.pb.go with the pinned buf and protoc-gen-go
	cd proto && go run github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION) generate

.PHONY: docs
docs: ## regenerate what the config specs describe: each connector README's field table, docs/connectors.schema.json, the config reference
	cd pkg && go generate ./connectors/builtin

lint: ## gofmt and go vet on every module
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do (cd $$m && go vet ./...); done

# Tests start their own redis-server on random ports; this only makes sure
# the binary exists, installing Debian's package when it does not.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server not found: installing Debian's redis-server package"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; \
		command -v redis-server >/dev/null || { echo "could not install redis-server; install it and rerun"; exit 1; }; }

# The status page's test drives a real headless Chromium (chromedp); this
# makes sure Debian's chromium is there, installing it when it is not.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "chromium not found: installing Debian's chromium package (for the status page test)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
		command -v chromium >/dev/null || { echo "could not install chromium; install it and rerun"; exit 1; }; }

clean: ## remove build output
	rm -rf bin

.PHONY: chaos
chaos: redis-server ## the fault suite at full length, HA topologies included; writes docs/reliability.md (not in make test; about 10 minutes)
	cd test && go test -count=1 -timeout 40m -run TestChaos -v ./chaos -args -chaos.full -chaos.report=$(CURDIR)/docs/reliability.md

.PHONY: e2e-jaeger
e2e-jaeger: redis-server ## build and run a real Jaeger on 127.0.0.1 and check a tick's trace through its query API (not in make test)
	bash test/jaeger/run.sh

# docker compose: the whole platform in containers (docs/deploy.md).
POLLGRID_COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: up down
up: ## docker compose up: build the images and start the stack, wait until healthy
	POLLGRID_COMMIT=$(POLLGRID_COMMIT) docker compose up --build --detach --wait
	@echo "aggregator http://localhost:8080/metrics/connectors  grafana http://localhost:3000  jaeger http://localhost:16686  prometheus http://localhost:9090"

down: ## docker compose down (the data volumes stay; docker compose down -v drops them)
	docker compose down

# Images to push: <REGISTRY>/<service>:<TAG>, the names docker-compose.yml
# (pollgrid/<service>:dev) and the Helm chart (pollgrid/<service>:<appVersion>)
# use; the binaries print TAG with -version. pollctl's image runs `pollctl
# apply` in compose's one-shot apply service and the chart's Job. GO_IMAGE and RUNTIME_IMAGE replace
# the Dockerfile's base images (pinned by digest, or your mirror's); DOCKER is
# the docker command and DOCKER_BUILD_FLAGS more flags for each docker build.
REGISTRY ?= pollgrid
TAG ?= $(VERSION)
IMAGES := scheduler worker aggregator pollctl
DOCKER ?= docker

.PHONY: images push compose-test
images: ## docker build <REGISTRY>/<image>:<TAG> for scheduler, worker, aggregator and pollctl (REGISTRY=pollgrid, TAG=git describe)
	@set -e; for s in $(IMAGES); do echo "== $(REGISTRY)/$$s:$(TAG) (commit $(COMMIT))"; \
		DOCKER_BUILDKIT=1 $(DOCKER) build $(DOCKER_BUILD_FLAGS) \
			$(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) $(if $(RUNTIME_IMAGE),--build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE)) \
			--build-arg SERVICE=$$s --build-arg VERSION=$(TAG) --build-arg COMMIT=$(COMMIT) -t $(REGISTRY)/$$s:$(TAG) . ; done

push: images ## make images, then docker push them (the same REGISTRY and TAG; docker login to it first)
	@set -e; for s in $(IMAGES); do $(DOCKER) push $(REGISTRY)/$$s:$(TAG); done

compose-test: ## docker compose up as a user runs it (3 workers, connectors applied by pollctl, a local upstream), checked, a worker killed, down -v; brings its own dockerd and stand-in images when needed (test/compose)
	bash test/compose/run.sh
