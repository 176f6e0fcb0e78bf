// Package admin is pollgrid's runtime control API: a NATS micro service,
// pollgrid-admin, whose endpoints answer on pollgrid.admin.<verb> with JSON.
// Each verb is served by the service that owns the answer (see ServedBy):
// several processes run instances of the one micro service, each with its
// own endpoints, so `nats micro info pollgrid-admin` shows who serves what.
//
// This package holds the wire types (the JSON both sides read), Server (the
// per-process micro service, with the reply's secrets redacted as a last
// guard) and Client (what pollctl and the tests use). The handlers live with
// the services' engines: pkg/scheduler (pause, resume), pkg/worker
// (trigger, reset), pkg/aggregator (list, status), pkg/catalog (apply,
// definitions, delete, get, history, rollback: the connector catalog, served
// by the scheduler) and pkg/service (reload, on every process).
//
// Access control is NATS's own: subject permissions on pollgrid.admin.>
// (docs/operate.md has an example server config).
package admin
