package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/budget"
	"github.com/pollgrid/pollgrid/pkg/catalog"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/connector"
	"github.com/pollgrid/pollgrid/pkg/redact"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// withConfig is feed() with another name and type-specific config.
func withConfig(name, cfg string) config.Connector {
	c := feed()
	c.Name, c.Config = name, json.RawMessage(cfg)
	return c
}

// tickAt is a tick planned from the given revision of c's definition.
func tickAt(c config.Connector, revision uint64) tick {
	tk := tickOf(c)
	tk.Revision = revision
	return tk
}

func TestATickOfANewerRevisionReadsTheDefinitionAgain(t *testing.T) {
	v1 := withConfig("feed", `{"v":1}`)
	fx := newFixture(t, Options{}, v1)
	ctx := context.Background()
	polledWith := func() string {
		_, polled := fx.builtWith()
		require.NotEmpty(t, polled)
		return polled[len(polled)-1]
	}

	fx.w.run(ctx, tickOf(v1), &answers{})
	assert.JSONEq(t, `{"v":1}`, polledWith())

	v2 := withConfig("feed", `{"v":2}`)
	rev2 := fx.define(t, v2)["feed"]
	fx.w.run(ctx, tickOf(v2), &answers{})
	assert.JSONEq(t, `{"v":1}`, polledWith(), "a tick of no known revision polls what the worker holds")
	fx.w.run(ctx, tickAt(v2, rev2-1), &answers{})
	assert.JSONEq(t, `{"v":1}`, polledWith(), "and so does a tick of an older one")

	fx.w.run(ctx, tickAt(v2, rev2), &answers{})
	assert.JSONEq(t, `{"v":2}`, polledWith(), "a tick planned from the new definition polls it")

	slower := v2
	slower.Interval = 2 * time.Minute
	rev3 := fx.define(t, slower)["feed"]
	fx.w.run(ctx, tickAt(slower, rev3), &answers{})
	built, polled := fx.builtWith()
	assert.Len(t, built, 2, "a definition whose config did not change keeps its connector")
	assert.Len(t, polled, 5)
	for _, r := range fx.reports() {
		assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, r.GetOutcome(), r.GetError())
	}
}

func TestATickOfTheNewTypeReadsTheDefinitionAgain(t *testing.T) {
	fx := newFixture(t, Options{})
	ctx := context.Background()
	fx.w.run(ctx, tickOf(feed()), &answers{})
	require.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, fx.onlyReport(t).GetOutcome())

	retyped := feed()
	retyped.Type = unbuildableType
	fx.define(t, retyped)
	ack := &answers{}
	fx.w.run(ctx, tickOf(retyped), ack) // no revision: the type alone says the definition changed
	assert.Equal(t, []string{"ack"}, ack.list())
	reports := fx.reports()
	require.Len(t, reports, 2)
	assert.Contains(t, reports[1].GetError(), "build connector feed", "polled as its new type")
	assert.Zero(t, testutil.ToFloat64(fx.w.metrics.badTicks))
}

func TestASmallCacheStillPollsEveryConnectorWithItsOwnDefinition(t *testing.T) {
	var connectors []config.Connector
	for i := range 5 {
		connectors = append(connectors, withConfig(fmt.Sprintf("feed-%d", i), fmt.Sprintf(`{"n":%d}`, i)))
	}
	fx := newFixture(t, Options{DefinitionsCache: 2}, connectors...)
	ctx := context.Background()
	for round := range 3 {
		for i, c := range connectors {
			ack := &answers{}
			fx.w.run(ctx, tickOf(c), ack)
			require.Equal(t, []string{"ack"}, ack.list())
			reports := fx.reports()
			last := reports[len(reports)-1]
			assert.Equal(t, c.Name, last.GetConnector())
			assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, last.GetOutcome(), "round %d: %s", round, last.GetError())
			_, polled := fx.builtWith()
			assert.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i), polled[len(polled)-1], "round %d: %s polls its own config", round, c.Name)
			assert.LessOrEqual(t, fx.w.defs.instances.Len(), 2, "the worker holds no more than its cache")
		}
	}
	assert.Len(t, fx.reports(), 15)
	built, _ := fx.builtWith()
	assert.Len(t, built, 15, "each connector past the cache is read and built again")
}

func TestADefinitionThisWorkerCannotPollFailsOnlyItsPoll(t *testing.T) {
	tokened := withConfig("tokened", `{"token":"Bearer ${PG_WORKER_TEST_TOKEN}"}`)
	tests := []struct {
		name   string
		define func(t *testing.T, fx *fixture)
		tick   tick
		want   []string // in the report's error
	}{
		{name: "a variable unset in the worker's environment", define: func(t *testing.T, fx *fixture) { fx.define(t, tokened) },
			tick: tickOf(tokened),
			want: []string{"connector tokened (catalog revision ", "config.token: environment variable PG_WORKER_TEST_TOKEN is not set",
				"a worker resolves ${VAR} from its own environment: set it in every worker's"}},
		{name: "a type this worker does not know", define: func(t *testing.T, fx *fixture) {
			_, err := fx.cat.Put(context.Background(), catalog.Connector("alien"), []byte(`{"name":"alien","type":"martian"}`), 0)
			require.NoError(t, err)
		}, tick: tick{Tick: &pollgridv1.Tick{Connector: "alien", ConnectorType: "martian"}, deliveries: 1},
			want: []string{"connector alien (catalog revision ", `type: unknown type "martian" (known: fake, unbuildable) (fix the definition and pollctl apply it)`}},
		{name: "a definition under another name", define: func(t *testing.T, fx *fixture) {
			_, err := fx.cat.Put(context.Background(), catalog.Connector("copied"), []byte(`{"name":"feed","type":"fake"}`), 0)
			require.NoError(t, err)
		}, tick: tick{Tick: &pollgridv1.Tick{Connector: "copied", ConnectorType: feedType}, deliveries: 1},
			want: []string{`its definition is named "feed"`}},
		{name: "a budget not in the catalog", define: func(t *testing.T, fx *fixture) {
			_, err := fx.cat.Put(context.Background(), catalog.Connector("thrifty"), []byte(`{"name":"thrifty","type":"fake","budget":"nowhere"}`), 0)
			require.NoError(t, err)
		}, tick: tick{Tick: &pollgridv1.Tick{Connector: "thrifty", ConnectorType: feedType}, deliveries: 1},
			want: []string{"connector thrifty: budget nowhere is not in the catalog"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, Options{Env: config.MapEnv(map[string]string{"OTHER": "x"})})
			tt.define(t, fx)
			ctx := context.Background()
			for range 2 { // the second tick meets the held definition
				ack := &answers{}
				fx.w.run(ctx, tt.tick, ack)
				assert.Equal(t, []string{"ack"}, ack.list(), "the next tick tries again")
			}
			reports := fx.reports()
			require.Len(t, reports, 2)
			for _, r := range reports {
				assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, r.GetOutcome())
				assert.Equal(t, tt.tick.GetConnector(), r.GetConnector())
				assert.Equal(t, tt.tick.GetConnectorType(), r.GetConnectorType())
				for _, want := range tt.want {
					assert.Contains(t, r.GetError(), want)
				}
				assert.NotContains(t, r.GetError(), "\n", "one line")
				assert.Zero(t, r.GetFencingToken(), "no lease taken")
			}

			ack := &answers{}
			fx.w.run(ctx, tickOf(feed()), ack)
			assert.Equal(t, []string{"ack"}, ack.list())
			assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, fx.reports()[2].GetOutcome(), "the other connectors poll")
			assert.Equal(t, 1, fx.connectorPolls())
		})
	}
}

func TestASecretResolvedFromTheWorkersEnvironmentNeverLeaves(t *testing.T) {
	const secret = "s3cr3t-4c1d-99"
	var logs bytes.Buffer
	redactor := redact.New()
	logger := slog.New(redact.NewHandler(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}), redactor))
	tokened := withConfig("feed", `{"token":"${PG_WORKER_TEST_TOKEN}"}`)
	fx := newFixture(t, Options{Logger: logger, Redactor: redactor,
		Env: config.MapEnv(map[string]string{"PG_WORKER_TEST_TOKEN": secret})}, tokened)
	fx.onPoll(func(context.Context, connector.State) (connector.Result, error) {
		_, polled := fx.builtWith()
		return connector.Result{}, errors.New("upstream refused " + polled[len(polled)-1])
	})
	fx.w.run(context.Background(), tickOf(tokened), &answers{})

	_, polled := fx.builtWith()
	require.Len(t, polled, 1)
	assert.JSONEq(t, `{"token":"`+secret+`"}`, polled[0], "the worker resolved it from its environment")
	report := fx.onlyReport(t)
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE, report.GetOutcome())
	assert.Contains(t, report.GetError(), `upstream refused {"token":"[REDACTED]"}`)
	assert.Contains(t, logs.String(), "poll failed")
	assert.NotContains(t, logs.String(), secret)
	assert.NotContains(t, fx.state(t, "feed").LastError, secret)
}

// unreadable is a catalog that cannot be read: NATS is down.
type unreadable struct{}

func (unreadable) Get(context.Context, catalog.Ref) (catalog.Entry, error) {
	return catalog.Entry{}, errors.New("read feed from pollgrid-connectors: nats: timeout")
}

func TestATickWhoseDefinitionCannotBeReadComesBack(t *testing.T) {
	fx := newFixture(t, Options{})
	fx.w.defs.catalog = unreadable{}
	ack := &answers{}
	fx.w.run(context.Background(), tickOf(feed()), ack)
	assert.Equal(t, []string{"nak 2s"}, ack.list())
	assert.Empty(t, fx.reports(), "nothing polled: nothing to report")
	assert.InDelta(t, 1, testutil.ToFloat64(fx.w.metrics.errors.WithLabelValues("nats", "catalog")), 0)

	_, err := fx.w.Trigger(context.Background(), []byte(`{"name":"feed"}`))
	var adminErr *admin.Error
	require.ErrorAs(t, err, &adminErr)
	assert.Equal(t, admin.CodeUnavailable, adminErr.Code)
}

func TestTheBudgetComesFromTheCatalogAndItsSharersFromTheTick(t *testing.T) {
	c := feed()
	c.Budget = config.Budget{Name: "gh", Limit: 100, Per: time.Minute, Burst: 5}
	fx := newFixture(t, Options{}, c)
	reg := prometheus.NewRegistry()
	limiter, err := budget.New(fx.rdb, fx.st.Keys(), reg)
	require.NoError(t, err)
	fx.w.opts.Budgets = limiter
	ctx := context.Background()

	for _, tt := range []struct {
		sharers uint32
		want    int
	}{{sharers: 3, want: 3}, {sharers: 0, want: 1}} {
		tk := tickOf(c)
		tk.BudgetSharers = tt.sharers
		in, ok := fx.w.admit(ctx, tk, &answers{})
		require.True(t, ok)
		require.NoError(t, in.err)
		assert.Equal(t, config.Budget{Name: "gh", Limit: 100, Per: time.Minute, Burst: 5, Connectors: tt.want}, in.cfg.Budget)
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	declared := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				declared = declared || l.GetValue() == "gh"
			}
		}
	}
	assert.True(t, declared, "the budget's metrics start at zero once the worker meets it")

	fx.w.run(ctx, tickOf(c), &answers{})
	assert.Equal(t, pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS, fx.onlyReport(t).GetOutcome())
}

func TestTriggerAndResetReadTheLatestDefinition(t *testing.T) {
	fx := newFixture(t, Options{}, withConfig("feed", `{"v":1}`))
	ctx := context.Background()
	fx.w.run(ctx, tickOf(feed()), &answers{})
	fx.define(t, withConfig("feed", `{"v":2}`))

	_, err := fx.w.Trigger(ctx, []byte(`{"name":"feed"}`))
	require.NoError(t, err)
	_, polled := fx.builtWith()
	require.Len(t, polled, 2)
	assert.JSONEq(t, `{"v":2}`, polled[1], "a trigger has no tick: it reads the latest")

	got, err := fx.w.Reset(ctx, []byte(`{"name":"feed","confirm":"feed"}`))
	require.NoError(t, err)
	assert.Equal(t, "feed", got.(admin.ResetReply).Connector)

	for verb, request := range map[string]string{"trigger": `{"name":"nope"}`, "reset": `{"name":"nope","confirm":"nope"}`} {
		handle := fx.w.Trigger
		if verb == "reset" {
			handle = fx.w.Reset
		}
		_, err = handle(ctx, []byte(request))
		var adminErr *admin.Error
		require.ErrorAs(t, err, &adminErr)
		assert.Equal(t, admin.CodeNotFound, adminErr.Code, verb)
		assert.Contains(t, adminErr.Message, `no connector named "nope" in the catalog`, verb)
	}
}
