// Package compose checks docker-compose.yml the way a user meets it: `docker
// compose up` of the real file with three workers and the connectors applied
// by its one-shot apply service (pollctl apply), then what a user would look
// at. A connector polling a local upstream container produces signals a
// subscriber of signals.> receives, the status page answers, Prometheus
// scrapes every replica, a connector added to the file is polled once
// `docker compose run --rm apply` applied it, a worker container killed with
// `docker kill` costs its connectors less than 3 s and neither loses nor
// duplicates a signal, and `docker compose down -v` leaves no container,
// volume or network behind.
//
// The tests need a Docker engine and the images, so they sit behind the
// compose build tag: `make compose-test` (run.sh) brings the engine, builds
// the images (stand-ins for the registry's when no registry answers) and runs
// `go test -tags compose ./compose` with COMPOSE_FILE naming the compose
// files: docker-compose.yml, standins.yml when needed, and compose-test.yml
// (the upstream, and a connectors file polling it).
package compose
