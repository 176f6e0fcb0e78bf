#!/usr/bin/env bash
# make e2e-jaeger: build the pinned Jaeger, run it on 127.0.0.1, run
# TestObservabilityJaeger (the in-process stack and a signal consumer of the
# test's own, all exporting over OTLP/HTTP to it), and check through Jaeger's
# query API that a poll's trace reaches from the tick through its signals to
# the consumer's spans, and that the aggregator's flush span links to it. Not
# part of make test: the first build downloads and compiles Jaeger (minutes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/bin/tools/jaeger"

if [ ! -x "$bin" ]; then
	echo "== building Jaeger (pinned in test/jaeger/go.mod) into bin/tools/jaeger"
	mkdir -p "$root/bin/tools"
	(cd "$here" && GOWORK=off go build -o "$bin" github.com/jaegertracing/jaeger/cmd/jaeger)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export JAEGER_OTLP_PORT=$(free_port) JAEGER_QUERY_PORT=$(free_port) JAEGER_QUERY_GRPC_PORT=$(free_port) JAEGER_HEALTH_PORT=$(free_port)
log=$(mktemp -t pollgrid-jaeger.XXXXXX.log)
"$bin" --config "$here/config.yaml" >"$log" 2>&1 &
jaeger_pid=$!
trap 'kill $jaeger_pid 2>/dev/null || true; wait $jaeger_pid 2>/dev/null || true' EXIT

echo "== waiting for Jaeger (OTLP 127.0.0.1:$JAEGER_OTLP_PORT, query 127.0.0.1:$JAEGER_QUERY_PORT, log $log)"
for _ in $(seq 1 120); do
	if curl -fsS "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services" >/dev/null 2>&1; then break; fi
	if ! kill -0 $jaeger_pid 2>/dev/null; then echo "Jaeger exited:"; cat "$log"; exit 1; fi
	sleep 0.5
done
curl -fsS "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services" >/dev/null || { echo "Jaeger did not answer:"; cat "$log"; exit 1; }

echo "== go test -run TestObservabilityJaeger ./e2e/"
cd "$root/test"
POLLGRID_JAEGER_OTLP="http://127.0.0.1:$JAEGER_OTLP_PORT" POLLGRID_JAEGER_QUERY="http://127.0.0.1:$JAEGER_QUERY_PORT" \
	go test -race -count=1 -v -run 'TestObservabilityJaeger$' ./e2e/
