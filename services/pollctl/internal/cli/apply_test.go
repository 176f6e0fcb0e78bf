package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/catalog/catalogtest"
)

// catalogServer is an embedded NATS with JetStream and a scheduler's
// catalog verbs on it, as schedulerd serves them.
type catalogServer struct {
	nc  *nats.Conn
	url string
	cat *catalog.Catalog
	js  jetstream.JetStream
}

func startCatalog(t *testing.T) *catalogServer {
	t.Helper()
	s := catalogtest.Start(t)
	return &catalogServer{nc: s.NC, url: s.URL, cat: s.Catalog, js: s.JS}
}

// writes counts the catalog's writes (its stream's messages).
func (s *catalogServer) writes(t *testing.T) uint64 {
	t.Helper()
	st, err := s.js.Stream(context.Background(), "KV_"+catalog.Bucket)
	require.NoError(t, err)
	return st.CachedInfo().State.LastSeq
}

// pollctl runs pollctl against the server with stdin.
func (s *catalogServer) pollctl(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := map[string]string{"HOME": t.TempDir()}
	code = Main(append([]string{"--server", s.url}, args...), IO{In: strings.NewReader(stdin), Out: &out, Err: &errOut, Env: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	return code, out.String(), errOut.String()
}

// connectorsFile writes n demo connectors c-0000..., the first ten drawing
// from budget "shared", plus the budgets given.
func connectorsFile(n int, change func(i int) (entry string, keep bool), budgets ...string) string {
	var entries []string
	for i := range n {
		entry := fmt.Sprintf(`{"name": "c-%04d", "type": "demo", "interval": "60s", "config": {"change_every": "10s"}}`, i)
		if i < 10 {
			entry = fmt.Sprintf(`{"name": "c-%04d", "type": "demo", "interval": "60s", "budget": "shared", "config": {"change_every": "10s"}}`, i)
		}
		keep := true
		if change != nil {
			if e, k := change(i); e != "" || !k {
				entry, keep = e, k
			}
		}
		if keep {
			entries = append(entries, entry)
		}
	}
	return `{"budgets": {` + strings.Join(append([]string{`"shared": {"limit": 100, "per": "1s"}`}, budgets...), ", ") +
		`}, "connectors": [` + strings.Join(entries, ",\n") + `]}`
}

// A file of 3,000 connectors goes in several requests; applying it again
// writes nothing; --dry-run prints the difference and writes nothing;
// --prune deletes what the file left out, connectors and budgets; -f -
// reads standard input.
func TestApplyInParts(t *testing.T) {
	s := startCatalog(t)
	dir := t.TempDir()
	first := filepath.Join(dir, "connectors.json")
	require.NoError(t, os.WriteFile(first, []byte(connectorsFile(3000, nil, `"old": {"limit": 5, "per": "1s"}`)), 0o600))
	const parts = "--chunk-bytes=60000" // about 290 KB of connectors in all: five parts
	requests, err := s.nc.SubscribeSync(admin.Subject(admin.VerbApply))
	require.NoError(t, err)
	require.NoError(t, s.nc.Flush())

	code, out, stderr := s.pollctl(t, "", "apply", "-f", first, parts)
	require.Equal(t, ExitOK, code, stderr)
	sent, _, err := requests.Pending()
	require.NoError(t, err)
	assert.Equal(t, 5, sent, "requests")
	require.NoError(t, requests.Unsubscribe())
	assert.Contains(t, out, "budget old created\nbudget shared created\nc-0000 created\n")
	assert.Contains(t, out, "... and 2992 more created\n")
	assert.Contains(t, out, first+": 3002 created, 0 changed, 0 deleted, 0 unchanged\n")
	written := s.writes(t)
	assert.EqualValues(t, 3002, written)

	code, out, stderr = s.pollctl(t, "", "apply", "-f", first, parts)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, first+": 0 created, 0 changed, 0 deleted, 3002 unchanged\n", out)
	assert.Equal(t, written, s.writes(t), "applying the same file again writes nothing")

	// The next file: c-0007 and budget old left out, c-0010 changed, c-3000 added.
	next := connectorsFile(3001, func(i int) (string, bool) {
		switch i {
		case 7:
			return "", false
		case 10:
			return `{"name": "c-0010", "type": "demo", "interval": "30s", "config": {"change_every": "10s"}}`, true
		}
		return "", true
	})
	code, out, stderr = s.pollctl(t, next, "apply", "-f", "-", "--prune", "--dry-run", parts)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "c-3000 created\nc-0010 changed\nc-0007 deleted\nbudget old deleted\n"+
		"standard input: 1 created, 1 changed, 2 deleted, 2999 unchanged (dry run: nothing was written)\n", out)
	assert.Equal(t, written, s.writes(t), "a dry run writes nothing")

	code, out, stderr = s.pollctl(t, next, "--json", "apply", "-f", "-", "--prune", parts)
	require.Equal(t, ExitOK, code, stderr)
	var diff admin.ApplyReply
	require.NoError(t, json.Unmarshal([]byte(out), &diff), out)
	assert.Equal(t, admin.ApplyReply{
		Created:   []admin.Ref{{Kind: admin.KindConnector, Name: "c-3000"}},
		Changed:   []admin.Ref{{Kind: admin.KindConnector, Name: "c-0010"}},
		Deleted:   []admin.Ref{{Kind: admin.KindConnector, Name: "c-0007"}, {Kind: admin.KindBudget, Name: "old"}},
		Unchanged: 2999,
	}, diff)
	assert.Equal(t, written+4, s.writes(t))
	_, err = s.cat.Get(context.Background(), catalog.Connector("c-0007"))
	assert.ErrorIs(t, err, catalog.ErrNotFound)
	_, err = s.cat.Get(context.Background(), catalog.Budget("old"))
	assert.ErrorIs(t, err, catalog.ErrNotFound)

	code, out, stderr = s.pollctl(t, next, "apply", "-f", "-", "--prune", parts)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "standard input: 0 created, 0 changed, 0 deleted, 3001 unchanged\n", out)
}

// A file with problems is checked before anything is sent: every problem
// listed, exit 1, and NATS never asked (it is not even there).
func TestApplyChecksTheFileFirst(t *testing.T) {
	file := filepath.Join(t.TempDir(), "connectors.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"connectors": [
		{"name": "ok", "type": "demo", "config": {"change_every": "10s"}},
		{"name": "Bad Name", "type": "demo", "config": {"change_every": "10s"}},
		{"name": "c", "type": "nope"}]}`), 0o600))
	code, out, stderr := run(t, map[string]string{"HOME": t.TempDir()}, "--server", "nats://127.0.0.1:1", "apply", "-f", file)
	assert.Equal(t, ExitFailed, code, stderr)
	assert.Contains(t, out, file+": 2 problems\n  connectors[1].name: ")
	assert.Contains(t, out, "\n  connectors[2].type: ")
	assert.Equal(t, "pollctl: "+file+" is not valid: fix the 2 problems above; nothing was sent\n", stderr)

	code, _, stderr = run(t, nil, "apply")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "give the file to apply: -f FILE, or -f - to read standard input")
}

// get prints a definition as written, history what each revision
// changed, rollback writes an older value back, delete deletes.
func TestDefinitionCommands(t *testing.T) {
	s := startCatalog(t)
	for _, interval := range []string{"60s", "30s"} {
		file := `{"connectors": [{"name": "a", "type": "demo", "interval": "` + interval + `", "labels": {"team": "${TEAM}"}, "config": {"change_every": "10s"}}]}`
		code, _, stderr := s.pollctl(t, file, "apply", "-f", "-")
		require.Equal(t, ExitOK, code, stderr)
	}

	code, out, stderr := s.pollctl(t, "", "get")
	require.Equal(t, ExitOK, code, stderr)
	assert.Regexp(t, `^KIND\s+NAME\s+REVISION\nconnector\s+a\s+2\n$`, out)

	code, out, stderr = s.pollctl(t, "", "get", "a", "--json")
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, `{"name":"a","type":"demo","interval":"30s","labels":{"team":"${TEAM}"},"config":{"change_every":"10s"}}`+"\n", out, "as written, keys in order")
	code, out, _ = s.pollctl(t, "", "get", "a")
	require.Equal(t, ExitOK, code)
	assert.Regexp(t, `^a, revision 2, written \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n\{\n  "name": "a",\n  "type": "demo",`, out)

	code, out, _ = s.pollctl(t, "", "history", "a")
	require.Equal(t, ExitOK, code)
	assert.Regexp(t, `(?m)^1\s+\S+ \S+\s+put\s+created$`, out)
	assert.Regexp(t, `(?m)^2\s+\S+ \S+\s+put\s+interval: 60s → 30s$`, out)

	code, out, _ = s.pollctl(t, "", "rollback", "a")
	require.Equal(t, ExitOK, code)
	assert.Equal(t, "rolled a back to the value of revision 1, written as revision 3\n", out)

	code, out, _ = s.pollctl(t, "", "delete", "a")
	require.Equal(t, ExitOK, code)
	assert.Equal(t, "deleted a (revision 3; pollctl rollback a restores it)\n", out)
	code, _, stderr = s.pollctl(t, "", "get", "a")
	assert.Equal(t, ExitNotFound, code)
	assert.Contains(t, stderr, "the connector a was deleted (revision 4)")

	code, out, _ = s.pollctl(t, "", "rollback", "a")
	require.Equal(t, ExitOK, code)
	assert.Equal(t, "rolled a back to the value of revision 3, written as revision 5\n", out)
	code, out, _ = s.pollctl(t, "", "history", "a")
	require.Equal(t, ExitOK, code)
	assert.Regexp(t, `(?m)^4\s+\S+ \S+\s+delete\s+deleted$`, out)
	assert.Regexp(t, `(?m)^5\s+\S+ \S+\s+put\s+created$`, out)
}

// A part in conflict is asked again once; a second conflict is reported,
// with what was applied before it.
func TestApplyAsksAConflictingPartAgainOnce(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	srv, err := admin.NewServer(nc, admin.ServerConfig{Service: "scheduler", Instance: "s1"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	var mu sync.Mutex
	calls := map[string]int{}                // requests by the part's first connector
	conflicts := map[string]int{"c-0000": 1} // conflicts left to answer, by part
	require.NoError(t, srv.Handle(admin.VerbApply, func(_ context.Context, data []byte) (any, error) {
		var req admin.ApplyRequest
		require.NoError(t, json.Unmarshal(data, &req))
		var first struct {
			Name string `json:"name"`
		}
		require.NoError(t, json.Unmarshal(req.Connectors[0], &first))
		mu.Lock()
		defer mu.Unlock()
		calls[first.Name]++
		if conflicts[first.Name] > 0 {
			conflicts[first.Name]--
			return nil, admin.Errorf(admin.CodeConflict, "1 definitions changed while this apply wrote them (%s): someone else applied at the same time; apply again", first.Name)
		}
		return admin.ApplyReply{Unchanged: len(req.Connectors) + len(req.Budgets)}, nil
	}))
	require.NoError(t, srv.Handle(admin.VerbDefinitions, func(context.Context, []byte) (any, error) {
		return admin.DefinitionsReply{Refs: []admin.Ref{}}, nil // an empty catalog: every connector is sent
	}))
	s := &catalogServer{url: ns.ClientURL()}
	file := connectorsFile(4, nil)
	const parts = "--chunk-bytes=100" // one connector a part

	code, out, stderr := s.pollctl(t, file, "apply", "-f", "-", parts)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "standard input: 0 created, 0 changed, 0 deleted, 5 unchanged\n", out)
	mu.Lock()
	assert.Equal(t, map[string]int{"c-0000": 2, "c-0001": 1, "c-0002": 1, "c-0003": 1}, calls, "the first part asked twice")
	clear(calls)
	conflicts["c-0001"] = 2 // the second part, twice
	mu.Unlock()
	code, _, stderr = s.pollctl(t, file, "apply", "-f", "-", parts)
	assert.Equal(t, ExitFailed, code)
	assert.Regexp(t, `^pollctl: part 2 of 4 of standard input, asked twice: 1 definitions changed while this apply wrote them \(c-0001\): `+
		`someone else applied at the same time; apply again; [1-3] of the 4 parts were applied: apply again to finish\n$`, stderr)
}

// A digest the catalog lists is read as the one its String wrote; any
// other text matches no definition, as comparing the texts would say.
func TestSumOf(t *testing.T) {
	sum := catalog.SumOf([]byte(`{"name":"a"}`))
	got, ok := sumOf(sum.String())
	assert.True(t, ok)
	assert.Equal(t, sum, got)
	for _, listed := range []string{"", strings.ToUpper(sum.String()), sum.String()[1:], sum.String() + "00", "zz" + sum.String()[2:]} {
		_, ok := sumOf(listed)
		assert.False(t, ok, listed)
	}
}
