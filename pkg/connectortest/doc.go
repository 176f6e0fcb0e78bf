// Package connectortest is the kit for writing and testing a connector type.
//
// Replay serves recorded upstream answers (files in testdata/, with their
// recorded status and headers, nothing guessed) and records every request;
// Recorder writes such files from a real upstream. A Harness runs the connector
// through the real universal poll (package poll) with its state and seen
// versions in a real redis-server, committing after each poll as a worker
// does, so a test sees what users would: which signals a poll publishes,
// and what state it leaves.
//
//	srv := connectortest.Replay(t,
//		connectortest.GET("/alerts/active?area=WA", connectortest.Load(t, "alerts_active_area_WA_2024.json")))
//	h := connectortest.New(t, weathernoaa.New, weathernoaa.TypeName,
//		`{"area": "WA", "user_agent": "(test, ops@example.com)", "base_url": "`+srv.URL+`"}`)
//
//	first := h.Poll(t.Context())
//	first.RequireOK(t)
//	first.AssertSignals(t, connectortest.Want{ID: "urn:oid:...", Change: connectortest.Created})
//	h.Poll(t.Context()).AssertNoSignals(t) // same data: nothing new
//
// Tests that call a connector's Poll themselves share the rest of the kit:
// Serve answers with a handler (a recorded Response can answer from it:
// resp.ServeHTTP(w, r)) and records requests as Replay does; Hang holds
// every request, and its CancelPoll cancels a poll while its request hangs;
// ConfigError checks that a factory rejects a config with the error text a
// user needs; ItemIDs and ItemVersions list what a poll returned.
//
// Conformance checks the rules every type keeps (bad configs rejected
// without I/O, cancellation, failures move no cursor, a 304 to a
// conditional request is NotModified, repeats publish nothing, an empty
// body is an error); a type with no upstream (demo) sets Spec.Offline,
// and must then make no request at all. Package connectors/builtin runs it
// on every registered type.
package connectortest
