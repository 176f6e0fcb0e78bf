#!/usr/bin/env bash
# make compose-test: the platform started with docker compose as a user starts
# it, checked as a user would check it (compose_test.go, `go test -tags
# compose`), then taken down with `docker compose down -v`.
#
# It brings what it needs, as root (or with sudo):
#   - Debian's docker.io (dockerd, containerd, runc, and a docker CLI that
#     builds with BuildKit without the buildx plugin) and debootstrap;
#   - the compose client, built from the Go module proxy at $compose_version
#     and installed as a CLI plugin in a docker config folder of its own;
#   - a Docker engine: with none answering (DOCKER_HOST, /var/run/docker.sock)
#     it starts its own dockerd, its data in the cache and its socket and
#     state in a temporary folder, and stops it at the end, failure or not;
#   - the registry's images: when the engine cannot pull the Dockerfile's Go
#     image, it builds stand-ins (standins/*.Dockerfile: a Debian root file
#     system from debootstrap, the host's Go, nats-server from its Go module,
#     Debian's redis and prometheus) and adds standins.yml to the compose files.
# The service images are built by `make images` (the Dockerfile as shipped)
# and started with `docker compose up --no-build`.
#
# The cache (the root file system, the compose client, the engine's images
# and build cache) is kept in ~/.cache/pollgrid/compose (XDG_CACHE_HOME):
# delete it to measure a cold run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/pollgrid/compose
compose_version=v5.6.0
suite=bookworm
# What the Debian root file system of the stand-ins holds: wget for the
# compose healthchecks, the CA certificates and time zones distroless has,
# redis-server (with redis-cli) and prometheus for their stand-ins.
rootfs_packages=ca-certificates,tzdata,wget,redis-server,prometheus
mkdir -p "$cache/bin"

step() { printf '== [%3ds] %s\n' "$SECONDS" "$*"; }

# One run at a time: they would share the cache, the engine and the ports.
exec 9>"$cache/lock"
flock 9
# What a run stopped half-way left.
rm -rf "$cache"/context.* "$cache"/rootfs.*

sudo=
[ "$(id -u)" = 0 ] || sudo=sudo

# --- packages -------------------------------------------------------------

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[ -x /usr/bin/docker ] || command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
	step "installing Debian's ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PATH=$PATH:/usr/sbin:/sbin

# The docker CLI: the one on PATH when it has the buildx plugin (BuildKit
# builds go through it), else Debian's, whose classic BuildKit builds need no
# plugin. The builds and the Go test run it as `docker`.
docker=$(command -v docker || true)
if [ -z "$docker" ] || ! "$docker" buildx version >/dev/null 2>&1; then
	if [ ! -x /usr/bin/docker ]; then
		step "installing Debian's docker.io (its docker CLI builds with BuildKit)"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker.io >/dev/null
	fi
	docker=/usr/bin/docker
fi
ln -sf "$docker" "$cache/bin/docker"
export PATH="$cache/bin:$PATH" DOCKER_BUILDKIT=1

# --- the compose client -----------------------------------------------------

compose_bin=$cache/bin/docker-compose-$compose_version
if [ ! -x "$compose_bin" ]; then
	step "building docker compose $compose_version from the Go module proxy"
	mod=$(mktemp -d)
	printf 'module pollgrid.local/compose\n\ngo 1.24\n' >"$mod/go.mod"
	# go install ...@version refuses the exclude directives of compose's
	# go.mod: a wrapper module requires it and builds its command.
	(cd "$mod" && export GOWORK=off GOFLAGS=-mod=mod &&
		go get "github.com/docker/compose/v5/cmd@$compose_version" >/dev/null 2>&1 &&
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$compose_version" \
			-o "$compose_bin.tmp" github.com/docker/compose/v5/cmd) ||
		{ echo "could not build docker compose $compose_version"; rm -rf "$mod"; exit 1; }
	rm -rf "$mod"
	mv "$compose_bin.tmp" "$compose_bin"
fi
# A docker config folder of its own, so that `docker compose` is this
# client without touching the user's ~/.docker.
export DOCKER_CONFIG=$cache/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -sf "$compose_bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"

# --- the engine ---------------------------------------------------------------

dockerd_pid= run_dir=
compose_files=
stop_engine() {
	local rc=$?
	if [ -n "$compose_files" ] && docker version >/dev/null 2>&1; then
		# Whatever the test left when it failed half-way.
		COMPOSE_FILE=$compose_files docker compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
	fi
	if [ -n "$dockerd_pid" ]; then
		step "stopping dockerd (pid $dockerd_pid)"
		kill -TERM "$dockerd_pid" 2>/dev/null || true
		for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
		if kill -0 "$dockerd_pid" 2>/dev/null; then
			echo "dockerd did not stop in 30 s: killing it"
			kill -KILL "$dockerd_pid" 2>/dev/null || true
		fi
		wait "$dockerd_pid" 2>/dev/null || true
		# Its containerd, when it outlived dockerd.
		local cpid
		cpid=$(cat "$run_dir/exec/containerd/containerd.pid" 2>/dev/null || true)
		if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then kill -TERM "$cpid" 2>/dev/null || true; fi
		if [ $rc -ne 0 ]; then echo "dockerd's log: $cache/dockerd.log"; fi
		rm -rf "$run_dir" 2>/dev/null || true
	fi
	exit $rc
}
trap stop_engine EXIT
trap 'exit 130' INT TERM

if docker version >/dev/null 2>&1; then
	step "using the Docker engine at ${DOCKER_HOST:-unix:///var/run/docker.sock}"
elif [ -n "${DOCKER_HOST:-}" ]; then
	echo "DOCKER_HOST=$DOCKER_HOST does not answer: unset it to let make compose-test start an engine of its own"
	exit 1
elif [ "$(id -u)" != 0 ]; then
	echo "no Docker engine answers, and starting one needs root: run make compose-test as root, or start dockerd"
	exit 1
else
	# The socket and the state in a short temporary path (a socket's path
	# has at most 107 bytes); images and build cache in the cache.
	run_dir=$(mktemp -d /tmp/pollgrid-dockerd.XXXXXX)
	step "starting dockerd (data $cache/docker, socket $run_dir/docker.sock, log $cache/dockerd.log)"
	# No iptables: this engine touches nothing of the host's firewall; its
	# bridges join the containers, published ports go through docker-proxy.
	dockerd --data-root "$cache/docker" --exec-root "$run_dir/exec" --pidfile "$run_dir/dockerd.pid" \
		-H "unix://$run_dir/docker.sock" --iptables=false >"$cache/dockerd.log" 2>&1 &
	dockerd_pid=$!
	export DOCKER_HOST=unix://$run_dir/docker.sock
	for _ in $(seq 1 120); do
		docker version >/dev/null 2>&1 && break
		kill -0 "$dockerd_pid" 2>/dev/null || { echo "dockerd exited:"; tail -20 "$cache/dockerd.log"; exit 1; }
		sleep 0.5
	done
	docker version >/dev/null 2>&1 || { echo "dockerd did not answer in 60 s:"; tail -20 "$cache/dockerd.log"; exit 1; }
	step "dockerd $(docker version -f '{{.Server.Version}}'), storage driver $(docker info -f '{{.Driver}}')"
fi

# --- base images --------------------------------------------------------------

go_image=$(sed -n 's/^ARG GO_IMAGE=//p' "$root/Dockerfile")
build_args=()
compose_files=$root/docker-compose.yml
if docker image inspect "$go_image" >/dev/null 2>&1 || docker pull -q "$go_image" >/dev/null 2>&1; then
	step "the registry answers ($go_image): the compose file's own images"
else
	step "no registry ($go_image cannot be pulled): building stand-ins"
	compose_files=$compose_files:$here/standins.yml
	standins=$here/standins

	# A Debian root file system from Debian's packages, imported as an image.
	key=$(printf '%s %s' "$suite" "$rootfs_packages" | sha256sum | cut -c1-12)
	rootfs_tar=$cache/rootfs-$suite-$key.tar
	if [ ! -s "$rootfs_tar" ]; then
		step "debootstrap $suite ($rootfs_packages)"
		rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
		debootstrap --variant=minbase --include="$rootfs_packages" "$suite" "$rootfs" http://deb.debian.org/debian \
			>"$cache/debootstrap.log" 2>&1 || { echo "debootstrap failed:"; tail -20 "$cache/debootstrap.log"; exit 1; }
		rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
		tar -C "$rootfs" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
		rm -rf "$rootfs"
	fi
	base=pollgrid-standin/debian:$suite-$key
	if ! docker image inspect "$base" >/dev/null 2>&1; then
		step "docker import $base"
		docker import "$rootfs_tar" "$base" >/dev/null
	fi

	# Each stand-in's context in a folder of its own.
	ctx=$(mktemp -d "$cache/context.XXXXXX")
	mkdir "$ctx/empty"
	build_standin() { # image dockerfile context
		docker build -q --build-arg BASE="$base" -t "$1" -f "$standins/$2" "$3" >/dev/null
	}

	go_version=$(go env GOVERSION)
	export POLLGRID_STANDIN_GO=${go_version#go}-$suite
	if ! docker image inspect "pollgrid-standin/golang:$POLLGRID_STANDIN_GO" >/dev/null 2>&1; then
		step "pollgrid-standin/golang:$POLLGRID_STANDIN_GO (the host's $(go env GOROOT))"
		mkdir "$ctx/golang"
		# Hard links when the cache and GOROOT share a file system.
		cp -al "$(go env GOROOT)" "$ctx/golang/go" 2>/dev/null || cp -a "$(go env GOROOT)" "$ctx/golang/go"
		cp /etc/ssl/certs/ca-certificates.crt "$ctx/golang/"
		build_standin "pollgrid-standin/golang:$POLLGRID_STANDIN_GO" golang.Dockerfile "$ctx/golang"
	fi

	# nats-server at the version docker-compose.yml runs.
	export POLLGRID_STANDIN_NATS
	POLLGRID_STANDIN_NATS=$(sed -n 's/^ *image: nats:\([0-9.]*\).*/\1/p' "$root/docker-compose.yml")
	nats_bin=$cache/bin/nats-server-$POLLGRID_STANDIN_NATS
	if [ ! -x "$nats_bin" ]; then
		step "building nats-server v$POLLGRID_STANDIN_NATS from its Go module"
		mkdir "$ctx/gobin"
		GOWORK=off CGO_ENABLED=0 GOBIN=$ctx/gobin go install -trimpath -ldflags "-s -w" \
			"github.com/nats-io/nats-server/v2@v$POLLGRID_STANDIN_NATS"
		mv "$ctx/gobin/nats-server" "$nats_bin"
	fi
	mkdir "$ctx/nats"
	cp "$nats_bin" "$ctx/nats/nats-server"

	step "stand-ins: static (distroless), nats, redis, prometheus"
	build_standin pollgrid-standin/static:nonroot runtime.Dockerfile "$ctx/empty"
	build_standin "pollgrid-standin/nats:$POLLGRID_STANDIN_NATS" nats.Dockerfile "$ctx/nats"
	build_standin pollgrid-standin/redis:bookworm redis.Dockerfile "$standins"
	build_standin pollgrid-standin/prometheus:bookworm prometheus.Dockerfile "$ctx/empty"
	rm -rf "$ctx"
	# The build stage reaches the Go module proxy through the host's network
	# (this engine's bridges have no route out).
	build_args=(DOCKER_BUILD_FLAGS=--network=host
		GO_IMAGE="pollgrid-standin/golang:$POLLGRID_STANDIN_GO" RUNTIME_IMAGE=pollgrid-standin/static:nonroot)
fi

# --- the images under test ------------------------------------------------------

step "make images REGISTRY=pollgrid TAG=dev (docker-compose.yml's images)"
make -C "$root" --no-print-directory images REGISTRY=pollgrid TAG=dev DOCKER=docker "${build_args[@]}"

step "pollgrid-test/upstream:dev (test/bench/upstream)"
ctx=$(mktemp -d)
(cd "$root/test" && CGO_ENABLED=0 go build -trimpath -o "$ctx/upstream" ./bench/upstream)
docker build -q -t pollgrid-test/upstream:dev -f "$here/upstream.Dockerfile" "$ctx" >/dev/null
rm -rf "$ctx"

# --- the test -------------------------------------------------------------------

compose_files=$compose_files:$here/compose-test.yml
step "go test -tags compose ./compose (COMPOSE_FILE=$compose_files)"
rc=0
(cd "$root/test" && COMPOSE_FILE=$compose_files go test -tags compose -count=1 -timeout 20m -v ./compose/) || rc=$?
# The images the rebuilds left untagged, and build cache beyond 3 GB.
docker image prune -f >/dev/null 2>&1 || true
docker builder prune -f --keep-storage 3gb >/dev/null 2>&1 || true
step "done"
exit $rc
