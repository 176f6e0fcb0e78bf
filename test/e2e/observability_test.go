package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pollgrid/pollgrid/pkg/bus"
	"github.com/pollgrid/pollgrid/pkg/config"
	"github.com/pollgrid/pollgrid/pkg/redistest"
	"github.com/pollgrid/pollgrid/pkg/service"
	"github.com/pollgrid/pollgrid/pkg/telemetry"
	"github.com/pollgrid/pollgrid/services/aggregator/aggregatord"
	"github.com/pollgrid/pollgrid/services/scheduler/schedulerd"
	"github.com/pollgrid/pollgrid/services/worker/workerd"
	"github.com/pollgrid/pollgrid/test/harness"
)

const (
	obsConnector = "obs-az"
	obsSecret    = "obs-ua-s3cr3t-91be"
	tickSubject  = "pollgrid.tick.weather-noaa." + obsConnector
	signalSubj   = "signals.weather-noaa." + obsConnector
)

// observedStack is scheduler, worker and aggregator in process, each with
// the same in-memory span recorder added to its tracer provider (behind the
// redacting processor, exactly where the OTLP exporter sits), their JSON
// logs in one buffer.
type observedStack struct {
	spans      *tracetest.SpanRecorder
	logs       *harness.SyncBuffer
	nc         *nats.Conn
	scheduler  *harness.Service
	worker     *harness.Service
	aggregator *harness.Service
}

func startObservedStack(t *testing.T) *observedStack {
	t.Helper()
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	ns := harness.NATS(t)
	redis := redistest.Start(t)
	upstream := harness.NewUpstream(t, body)
	s := &observedStack{spans: tracetest.NewSpanRecorder(), logs: &harness.SyncBuffer{}}
	s.nc, _ = harness.Connect(t, ns.ClientURL())
	file := harness.WriteFile(t, "connectors.json", fmt.Sprintf(`{"connectors": [{"name": %q, "type": "weather-noaa",
		"interval": "1s", "timeout": "900ms", "retries": {"max": 0}, "lease_ttl": "3s",
		"config": {"area": "AZ", "user_agent": "(pollgrid e2e, ${OBS_SECRET})", "base_url": %q}},
		{"name": "obs-json", "type": "http-json", "interval": "1s", "timeout": "900ms", "retries": {"max": 0},
		"config": {"url": "%s/alerts.json?area=AZ&api_key=${OBS_SECRET}&q=${OBS_SECRET}",
			"items": ".features[]", "id": ".id", "version": ".properties.sent"}}]}`, obsConnector, upstream.URL, upstream.URL))
	env := func() map[string]string {
		return map[string]string{
			"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file, "OBS_SECRET": obsSecret,
			"LOG_LEVEL": "debug", "WORKER_ACK_WAIT": "3s", "SCHEDULER_LEADER_TTL": "3s",
		}
	}
	opts := []service.Option{service.WithSpanProcessor(s.spans), service.WithLogOutput(s.logs)}
	s.aggregator = harness.Start(t, aggregatord.Service, env(), opts...)
	s.worker = harness.Start(t, workerd.Service, env(), opts...)
	s.scheduler = harness.Start(t, schedulerd.Service, env(), opts...)
	return s
}

func serviceOf(s sdktrace.ReadOnlySpan) string {
	for _, kv := range s.Resource().Attributes() {
		if kv.Key == "service.name" {
			return kv.Value.AsString()
		}
	}
	return ""
}

func attrsOf(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// tickTrace returns the spans of the first trace of a tick that was polled
// with signals.
func tickTrace(t *testing.T, rec *tracetest.SpanRecorder) []sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		byTrace := map[trace.TraceID][]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			byTrace[s.SpanContext().TraceID()] = append(byTrace[s.SpanContext().TraceID()], s)
		}
		for _, spans := range byTrace {
			names := map[string]int{}
			for _, s := range spans {
				names[s.Name()]++
			}
			if names["process "+tickSubject] > 0 && names["publish "+signalSubj] > 0 && names["state commit"] > 0 {
				found = spans
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "no trace of a tick polled with signals")
	return found
}

// printTree logs the trace as docs/observability.md shows it.
func printTree(t *testing.T, spans []sdktrace.ReadOnlySpan) {
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Parent().IsValid() {
			children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		fmt.Fprintf(&b, "%s%s [%s, %s] %s\n", strings.Repeat("  ", depth), s.Name(), serviceOf(s), s.SpanKind(),
			s.EndTime().Sub(s.StartTime()).Round(10*time.Microsecond))
		kids := children[s.SpanContext().SpanID()]
		sort.Slice(kids, func(i, j int) bool { return kids[i].StartTime().Before(kids[j].StartTime()) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	t.Logf("trace %s:\n%s", spans[0].SpanContext().TraceID(), b.String())
}

// One tick is one trace: NATS fires the tick, so the worker's process span
// is the root (lease, HTTP, signals, commit), with the messaging attributes,
// the traceparent on every signal, no secret anywhere, and log lines that
// point at the spans.
func TestObservabilityOneTracePerTick(t *testing.T) {
	s := startObservedStack(t)
	// The signals are read back from the SIGNALS stream, which keeps their
	// headers: a subscription made now could miss the first tick's.
	js, err := jetstream.New(s.nc)
	require.NoError(t, err)

	spans := tickTrace(t, s.spans)
	printTree(t, spans)
	traceID := spans[0].SpanContext().TraceID()

	byName := map[string][]sdktrace.ReadOnlySpan{}
	var roots []sdktrace.ReadOnlySpan
	services := map[string]bool{}
	for _, sp := range spans {
		byName[sp.Name()] = append(byName[sp.Name()], sp)
		services[serviceOf(sp)] = true
		if !sp.Parent().IsValid() {
			roots = append(roots, sp)
		}
	}
	assert.Equal(t, map[string]bool{"pollgrid-worker": true}, services)

	// The root: the worker's consumer span of the tick NATS fired.
	require.Len(t, roots, 1, "one trace has one root")
	process := roots[0]
	assert.Equal(t, "process "+tickSubject, process.Name())
	require.Len(t, byName["process "+tickSubject], 1)
	assert.Equal(t, trace.SpanKindConsumer, process.SpanKind())
	assert.Equal(t, "pollgrid-worker", serviceOf(process))
	pa := attrsOf(process)
	assert.Equal(t, "nats", pa["messaging.system"])
	assert.Equal(t, "process", pa["messaging.operation.type"])
	assert.Equal(t, tickSubject, pa["messaging.destination.name"])
	assert.Equal(t, "workers", pa["messaging.consumer.group.name"])
	assert.Regexp(t, `^[0-9]+$`, pa["messaging.message.id"], "the TICKS stream sequence")
	assert.Equal(t, obsConnector, pa["pollgrid.connector"])
	assert.Equal(t, "weather-noaa", pa["pollgrid.connector_type"])
	assert.Equal(t, "success", pa["pollgrid.outcome"])
	// When the tick was meant to fire (its Nats-Schedule-Next minus the
	// interval, or a first tick's due_at), and how late the poll started.
	intended, err := time.Parse(time.RFC3339Nano, pa["pollgrid.tick.intended_time"])
	require.NoError(t, err, "pollgrid.tick.intended_time %q", pa["pollgrid.tick.intended_time"])
	assert.WithinDuration(t, process.StartTime(), intended, 30*time.Second)
	assert.Regexp(t, `^[0-9.e+-]+$`, pa["pollgrid.tick.lateness_seconds"])

	// Its children, in the order a poll runs them.
	pid := process.SpanContext().SpanID()
	kids := map[string]int{}
	var httpSpan sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.Parent().SpanID() == pid {
			assert.Equal(t, "pollgrid-worker", serviceOf(sp))
			if sp.SpanKind() == trace.SpanKindClient {
				httpSpan = sp
				kids["http"]++
				continue
			}
			kids[sp.Name()]++
		}
	}
	assert.Equal(t, 1, kids["lease acquire"])
	assert.Equal(t, 1, kids["http"], "one upstream request (otelhttp client span)")
	assert.Equal(t, 2, kids["publish "+signalSubj], "the fixture's two alerts are new")
	assert.Equal(t, 1, kids["state commit"])
	require.NotNil(t, httpSpan)
	ha := attrsOf(httpSpan)
	assert.Equal(t, "200", ha["http.response.status_code"])
	assert.Contains(t, ha["url.full"], "/alerts/active")
	assert.Equal(t, "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", httpSpan.InstrumentationScope().Name)
	for _, sig := range byName["publish "+signalSubj] {
		sa := attrsOf(sig)
		assert.Equal(t, trace.SpanKindProducer, sig.SpanKind())
		assert.Equal(t, signalSubj, sa["messaging.destination.name"])
		assert.Regexp(t, `^[0-9a-f]{32}$`, sa["messaging.message.id"], "the signal's Nats-Msg-Id")
	}

	// The poll's report reaches the aggregator in a batch: the span of the
	// flush that wrote it links to the poll's span.
	require.Eventually(t, func() bool {
		for _, sp := range s.spans.Ended() {
			if sp.Name() != "process "+bus.ReportPrefix+".*" || serviceOf(sp) != "pollgrid-aggregator" {
				continue
			}
			for _, l := range sp.Links() {
				if l.SpanContext.TraceID() == traceID && l.SpanContext.SpanID() == pid {
					return true
				}
			}
		}
		return false
	}, 15*time.Second, 50*time.Millisecond, "no aggregator flush span links to the poll's span")

	// Signals carry the traceparent of their own publish span, under its W3C
	// name and as the CloudEvents extension; a consumer that extracts it
	// starts a span in the poll's trace, a child of the signal's publish.
	consumerTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.spans))
	t.Cleanup(func() { _ = consumerTP.Shutdown(context.Background()) })
	publishIDs := map[string]bool{}
	for _, sig := range byName["publish "+signalSubj] {
		publishIDs[sig.SpanContext().SpanID().String()] = true
	}
	var signals []*jetstream.RawStreamMsg
	require.Eventually(t, func() bool {
		stream, err := js.Stream(context.Background(), bus.SignalsStream)
		if err != nil {
			return false
		}
		signals = nil
		for seq := stream.CachedInfo().State.FirstSeq; seq <= stream.CachedInfo().State.LastSeq; seq++ {
			m, err := stream.GetMsg(context.Background(), seq)
			if err != nil {
				return false
			}
			parts := strings.Split(m.Header.Get("traceparent"), "-")
			if len(parts) == 4 && parts[1] == traceID.String() && publishIDs[parts[2]] && parts[3] == "01" &&
				m.Header.Get("ce-traceparent") == m.Header.Get("traceparent") {
				signals = append(signals, m)
			}
		}
		return len(signals) == 2
	}, 10*time.Second, 20*time.Millisecond, "both signals carry the trace context of their publish span")
	for _, m := range signals {
		ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{
			"traceparent": m.Header.Get("traceparent"), "tracestate": m.Header.Get("tracestate"),
		})
		_, span := consumerTP.Tracer("e2e-consumer").Start(ctx, "process "+m.Subject, trace.WithSpanKind(trace.SpanKindConsumer))
		span.End()
	}
	joined := 0
	for _, sp := range s.spans.Ended() {
		if sp.Name() == "process "+signalSubj && sp.SpanContext().TraceID() == traceID {
			assert.True(t, publishIDs[sp.Parent().SpanID().String()], "a child of its signal's publish")
			joined++
		}
	}
	assert.Equal(t, 2, joined, "each consumer span joins the poll's trace")

	// The secret in the User-Agent reached the upstream and no span.
	for _, sp := range s.spans.Ended() {
		text := sp.Name() + sp.Status().Description
		for _, kv := range sp.Attributes() {
			text += " " + kv.Value.Emit()
		}
		for _, e := range sp.Events() {
			for _, kv := range e.Attributes {
				text += " " + kv.Value.Emit()
			}
		}
		for _, l := range sp.Links() {
			for _, kv := range l.Attributes {
				text += " " + kv.Value.Emit()
			}
		}
		require.NotContains(t, text, obsSecret, "span %s", sp.Name())
	}
	if ua, ok := ha["user_agent.original"]; ok {
		assert.Contains(t, ua, "[REDACTED]")
	}
	// The http-json connector carries the secret in its URL: otelhttp's
	// url.full is masked (api_key as a token-like parameter, q because the
	// runtime knows the resolved ${OBS_SECRET}).
	var jsonURL string
	require.Eventually(t, func() bool {
		for _, sp := range s.spans.Ended() {
			if u := attrsOf(sp)["url.full"]; sp.SpanKind() == trace.SpanKindClient && strings.Contains(u, "/alerts.json") {
				jsonURL = u
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "the http-json connector polled")
	assert.Regexp(t, `^http://127\.0\.0\.1:\d+/alerts\.json\?area=AZ&api_key=\[REDACTED\]&q=\[REDACTED\]$`, jsonURL)

	for _, sp := range s.spans.Ended() {
		for _, kv := range sp.Attributes() {
			require.NotContains(t, kv.Value.Emit(), obsSecret, "span %s attribute %s", sp.Name(), kv.Key)
		}
	}

	// Logs: the worker's lines of this poll carry its trace and span ids,
	// the connector and its type.
	var pollDone map[string]any
	for _, line := range logLines(t, s.logs.String()) {
		if line["service"] == "worker" && line["trace_id"] != nil {
			types := map[any]any{obsConnector: "weather-noaa", "obs-json": "http-json"}
			assert.Contains(t, types, line["connector"], "line %v", line)
			assert.Equal(t, types[line["connector"]], line["type"], "line %v", line)
			assert.NotEmpty(t, line["span_id"], "line %v", line)
		}
		if line["msg"] == "poll done" && line["trace_id"] == traceID.String() {
			pollDone = line
		}
	}
	require.NotNil(t, pollDone, "the poll's 'poll done' line carries its trace id")
	raw, _ := json.Marshal(pollDone)
	t.Logf("log line of the poll: %s", raw)
	assert.Equal(t, pid.String(), pollDone["span_id"])
	assert.Equal(t, obsConnector, pollDone["connector"])
	assert.NotContains(t, s.logs.String(), obsSecret)
}

func logLines(t *testing.T, logs string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line %s", sc.Text())
		out = append(out, m)
	}
	return out
}

// family is what a service must expose under one metric name.
type family struct {
	typ    dto.MetricType
	labels []string
	// optional families only appear once something happens (an error).
	optional bool
}

var (
	counter   = dto.MetricType_COUNTER
	gauge     = dto.MetricType_GAUGE
	histogram = dto.MetricType_HISTOGRAM
	// common is what every service's runtime exposes.
	common = map[string]family{
		"pollgrid_config_reloads_total":           {typ: counter, labels: []string{"result"}},
		"pollgrid_dependency_errors_total":        {typ: counter, labels: []string{"op", "system"}, optional: true},
		"pollgrid_build_info":                     {typ: gauge, labels: []string{"commit", "goversion", "service", "version"}},
		"pollgrid_redis_data_loss_total":          {typ: counter},
		"pollgrid_redis_rollback_total":           {typ: counter},
		"pollgrid_redis_epoch_check_errors_total": {typ: counter, labels: []string{"op"}},
	}
	// exposedMetrics is every pollgrid_ metric by service: the metrics test
	// checks the services against it, the dashboard test checks the
	// dashboard against it, docs/observability.md lists the same.
	exposedMetrics = map[string]map[string]family{
		"scheduler": with(common, map[string]family{
			"pollgrid_schedule_changes_total":      {typ: counter, labels: []string{"op"}},
			"pollgrid_first_ticks_total":           {typ: counter},
			"pollgrid_first_ticks_waiting":         {typ: gauge},
			"pollgrid_scheduler_leader":            {typ: gauge},
			"pollgrid_scheduled_connectors":        {typ: gauge},
			"pollgrid_scheduler_full_sync_seconds": {typ: histogram},
			// Adaptive intervals (issue 18).
			"pollgrid_scheduler_adaptations_total":  {typ: counter},
			"pollgrid_scheduler_adapted_connectors": {typ: gauge},
		}),
		"worker": with(common, map[string]family{
			"pollgrid_polls_total":                 {typ: counter, labels: []string{"outcome", "type"}},
			"pollgrid_poll_duration_seconds":       {typ: histogram, labels: []string{"type"}},
			"pollgrid_signals_published_total":     {typ: counter, labels: []string{"change", "type"}},
			"pollgrid_items_failed_total":          {typ: counter, labels: []string{"type"}},
			"pollgrid_lease_contention_total":      {typ: counter, labels: []string{"type"}},
			"pollgrid_ticks_missed_total":          {typ: counter, labels: []string{"type"}},
			"pollgrid_signals_duplicate_total":     {typ: counter, labels: []string{"type"}},
			"pollgrid_panics_total":                {typ: counter, labels: []string{"type"}},
			"pollgrid_crash_loops_total":           {typ: counter, labels: []string{"type"}},
			"pollgrid_seen_cap_items_total":        {typ: counter, labels: []string{"action", "type"}},
			"pollgrid_reports_dropped_total":       {typ: counter},
			"pollgrid_state_writes_fenced_total":   {typ: counter, labels: []string{"type"}},
			"pollgrid_upstream_rate_limited_total": {typ: counter, labels: []string{"type"}},
			"pollgrid_ticks_redelivered_total":     {typ: counter},
			"pollgrid_ticks_rejected_total":        {typ: counter},
			"pollgrid_tick_lateness_seconds":       {typ: histogram},
			"pollgrid_polls_in_flight":             {typ: gauge},
			"pollgrid_worker_concurrency":          {typ: gauge},
		}),
		"aggregator": with(common, map[string]family{
			"pollgrid_reports_processed_total":                  {typ: counter, labels: []string{"result"}},
			"pollgrid_connectors_reporting":                     {typ: gauge},
			"pollgrid_connectors":                               {typ: gauge, labels: []string{"health"}},
			"pollgrid_connector_gauges_omitted":                 {typ: gauge},
			"pollgrid_connector_healthy":                        {typ: gauge, labels: []string{"connector", "type"}},
			"pollgrid_connector_success_rate":                   {typ: gauge, labels: []string{"connector", "type"}},
			"pollgrid_connector_last_success_timestamp_seconds": {typ: gauge, labels: []string{"connector", "type"}},
			"pollgrid_connector_last_poll_timestamp_seconds":    {typ: gauge, labels: []string{"connector", "type"}},
			"pollgrid_connector_latency_p95_seconds":            {typ: gauge, labels: []string{"connector", "type"}},
			"pollgrid_connector_polls_total":                    {typ: counter, labels: []string{"connector", "outcome", "type"}},
			"pollgrid_connector_items_published_total":          {typ: counter, labels: []string{"connector", "type"}},
		}),
	}
)

func with(a, b map[string]family) map[string]family {
	out := map[string]family{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func scrape(t *testing.T, url, accept string) string {
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// Every service's /metrics: conventional names (pollgrid_ prefix, _total
// counters, _seconds durations), the types and label sets of the table
// above, no connector label outside the aggregator's capped gauges, and
// exemplars with sampled trace ids on the poll duration histogram. Then the
// Grafana dashboard may only query metrics that exist.
func TestObservabilityMetrics(t *testing.T) {
	s := startObservedStack(t)
	tickTrace(t, s.spans) // a full poll happened
	urls := map[string]string{"scheduler": s.scheduler.HTTP, "worker": s.worker.HTTP, "aggregator": s.aggregator.HTTP}
	exposed := map[string]dto.MetricType{}

	for svc, url := range urls {
		t.Run(svc, func(t *testing.T) {
			want := exposedMetrics[svc]
			var families map[string]*dto.MetricFamily
			require.Eventually(t, func() bool {
				parser := expfmt.NewTextParser(model.UTF8Validation)
				var err error
				families, err = parser.TextToMetricFamilies(strings.NewReader(scrape(t, url, "text/plain")))
				require.NoError(t, err)
				// The aggregator's series appear once it has processed a
				// report (counted when its flush wrote it to Redis), its
				// gauges once a report is in Redis: the worker's poll alone
				// says neither.
				return svc != "aggregator" || (reportsProcessed(families) >= 1 && families["pollgrid_connector_healthy"] != nil)
			}, 15*time.Second, 100*time.Millisecond, "%s: no report processed, or no connector gauge", svc)
			for name, mf := range families {
				if !strings.HasPrefix(name, "pollgrid_") {
					continue
				}
				exposed[name] = mf.GetType()
				f, ok := want[name]
				if !assert.True(t, ok, "%s exposes %s, which the table (and docs/observability.md) does not list", svc, name) {
					continue
				}
				assert.Equal(t, f.typ, mf.GetType(), name)
				for _, m := range mf.GetMetric() {
					var labels []string
					for _, l := range m.GetLabel() {
						labels = append(labels, l.GetName())
					}
					slices.Sort(labels)
					assert.Equal(t, f.labels, labels, "labels of %s", name)
					if !strings.HasPrefix(name, "pollgrid_connector") {
						assert.NotContains(t, labels, "connector", "%s: no connector label on high-volume series", name)
					}
				}
				switch mf.GetType() {
				case counter:
					assert.True(t, strings.HasSuffix(name, "_total"), "counter %s ends in _total", name)
				case histogram:
					assert.True(t, strings.HasSuffix(name, "_seconds"), "histogram %s is in seconds", name)
				default:
					assert.False(t, strings.HasSuffix(name, "_total"), "non-counter %s must not end in _total", name)
				}
			}
			for name, f := range want {
				if _, ok := families[name]; !ok && !f.optional {
					t.Errorf("%s does not expose %s", svc, name)
				}
			}
			if svc == "worker" {
				require.Contains(t, families, "pollgrid_worker_concurrency")
				require.Contains(t, families, "pollgrid_polls_total")
				assert.Equal(t, 4.0, families["pollgrid_worker_concurrency"].GetMetric()[0].GetGauge().GetValue())
				var success float64
				for _, m := range families["pollgrid_polls_total"].GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "outcome" && l.GetValue() == "success" {
							success += m.GetCounter().GetValue()
						}
					}
				}
				assert.GreaterOrEqual(t, success, 1.0)
			}
		})
	}

	t.Run("exemplars", func(t *testing.T) {
		om := scrape(t, s.worker.HTTP, "application/openmetrics-text; version=1.0.0")
		re := regexp.MustCompile(`(?m)^pollgrid_poll_duration_seconds_bucket\{[^}]*\} \S+ # \{trace_id="([0-9a-f]{32})"\}`)
		m := re.FindStringSubmatch(om)
		require.NotNil(t, m, "an exemplar with a trace id on the poll duration histogram:\n%s", om)
		traces := map[string]bool{}
		for _, sp := range s.spans.Ended() {
			traces[sp.SpanContext().TraceID().String()] = true
		}
		assert.True(t, traces[m[1]], "the exemplar's trace id is a recorded trace")
	})

	t.Run("dashboard", func(t *testing.T) {
		allowed := map[string]bool{}
		for name, typ := range exposed {
			allowed[name] = true
			if typ == histogram {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					allowed[name+suffix] = true
				}
			}
		}
		for _, fams := range exposedMetrics {
			for name, f := range fams {
				if f.optional {
					allowed[name] = true
				}
			}
		}
		raw, err := os.ReadFile("../../deploy/grafana/dashboards/pollgrid.json")
		require.NoError(t, err)
		var dash any
		require.NoError(t, json.Unmarshal(raw, &dash))
		exprs := collectExprs(dash)
		require.GreaterOrEqual(t, len(exprs), 6, "the dashboard's panels have queries")
		name := regexp.MustCompile(`pollgrid_[a-zA-Z0-9_:]*`)
		for _, e := range exprs {
			names := name.FindAllString(e, -1)
			assert.NotEmpty(t, names, "expr %q queries no pollgrid metric", e)
			for _, n := range names {
				assert.True(t, allowed[n], "dashboard expr %q queries %s, which no service exposes", e, n)
			}
		}
	})
}

// reportsProcessed is the aggregator's pollgrid_reports_processed_total{result="ok"}.
func reportsProcessed(families map[string]*dto.MetricFamily) float64 {
	for _, m := range families["pollgrid_reports_processed_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "result" && l.GetValue() == "ok" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// collectExprs returns every "expr" string in a Grafana dashboard.
func collectExprs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "expr" {
				out = append(out, s)
				continue
			}
			out = append(out, collectExprs(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, collectExprs(x)...)
		}
	}
	return out
}

// TestObservabilityJaeger is what `make e2e-jaeger` runs against a real
// Jaeger (test/jaeger/run.sh starts it and sets the two variables): the
// stack exports over OTLP/HTTP as in production, and the tick's trace is
// read back from Jaeger's query API, with spans of all three services.
func TestObservabilityJaeger(t *testing.T) {
	otlp, query := os.Getenv("POLLGRID_JAEGER_OTLP"), os.Getenv("POLLGRID_JAEGER_QUERY")
	if otlp == "" || query == "" {
		t.Skip("needs a running Jaeger: make e2e-jaeger")
	}
	body, err := os.ReadFile(fixture)
	require.NoError(t, err)
	ns := harness.NATS(t)
	redis := redistest.Start(t)
	upstream := harness.NewUpstream(t, body)
	// A connector name of its own, so that an earlier run's traces in a
	// long-lived Jaeger cannot satisfy this one.
	name := fmt.Sprintf("jaeger-%d", time.Now().UnixNano()%1_000_000)
	file := harness.WriteFile(t, "connectors.json", connectorsJSON(upstream.URL, name))
	env := func() map[string]string {
		return map[string]string{
			"NATS_URL": ns.ClientURL(), "REDIS_URL": redis.URL(), "CONNECTORS_FILE": file,
			"WORKER_ACK_WAIT": "3s", "LOG_LEVEL": "warn",
			"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_TRACES_SAMPLER": "parentbased_always_on",
		}
	}
	harness.Start(t, aggregatord.Service, env())
	harness.Start(t, workerd.Service, env())
	harness.Start(t, schedulerd.Service, env())

	// A consumer of the signals, as docs/observability.md shows one: it
	// extracts each signal's traceparent and starts its span there, exported
	// to the same Jaeger under a service of its own.
	consumerTP, err := telemetry.SetupTracing(context.Background(), "pollgrid-e2e-consumer", telemetry.TracingOptions{
		Lookup: config.MapEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": otlp}),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = consumerTP.Shutdown(context.Background()) })
	_, js := harness.Connect(t, ns.ClientURL())
	signalSubject := "signals.weather-noaa." + name
	signals, err := js.OrderedConsumer(context.Background(), bus.SignalsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{signalSubject},
	})
	require.NoError(t, err)
	consumed := make(chan struct{}, 16)
	cc, err := signals.Consume(func(msg jetstream.Msg) {
		ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{
			"traceparent": msg.Headers().Get("traceparent"), "tracestate": msg.Headers().Get("tracestate"),
		})
		_, span := consumerTP.Tracer("pollgrid-e2e-consumer").Start(ctx, "process "+msg.Subject(),
			trace.WithSpanKind(trace.SpanKindConsumer))
		span.End()
		consumed <- struct{}{}
	})
	require.NoError(t, err)
	t.Cleanup(cc.Stop)
	for range 2 { // the fixture's two alerts, new at the first poll
		select {
		case <-consumed:
		case <-time.After(60 * time.Second):
			t.Fatal("no signal reached the consumer")
		}
	}
	require.NoError(t, consumerTP.ForceFlush(context.Background()))

	tick := "pollgrid.tick.weather-noaa." + name
	search := func(service, operation string) []jaegerTrace {
		resp, err := http.Get(query + "/api/traces?limit=50&service=" + service + "&operation=" + url.QueryEscape(operation))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var out struct {
			Data []jaegerTrace `json:"data"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
			return nil
		}
		return out.Data
	}

	// The poll's trace: from the tick NATS fired, through the signals it
	// published, to the consumer's spans.
	var found *jaegerTrace
	require.Eventually(t, func() bool {
		for _, tr := range search("pollgrid-worker", "process "+tick) {
			consumers := 0
			for _, sp := range tr.Spans {
				if tr.service(sp) == "pollgrid-e2e-consumer" && sp.OperationName == "process "+signalSubject {
					consumers++
				}
			}
			if consumers == 2 {
				found = &tr
				return true
			}
		}
		return false
	}, 60*time.Second, 500*time.Millisecond, "Jaeger never returned a trace of %s that reaches its signals' consumer", tick)

	byID := map[string]jaegerSpan{}
	for _, sp := range found.Spans {
		byID[sp.SpanID] = sp
	}
	parentOf := func(sp jaegerSpan) string {
		for _, ref := range sp.References {
			if ref.RefType == "CHILD_OF" && ref.TraceID == found.TraceID {
				return byID[ref.SpanID].OperationName
			}
		}
		return ""
	}
	var lines []string
	count := map[string]int{}
	var process jaegerSpan
	for _, sp := range found.Spans {
		op := sp.OperationName
		if strings.HasPrefix(op, "GET") || strings.HasPrefix(op, "HTTP GET") {
			op = "GET"
		}
		count[op]++
		lines = append(lines, fmt.Sprintf("%s [%s] <- %q", sp.OperationName, found.service(sp), parentOf(sp)))
		if sp.OperationName == "process "+tick {
			process = sp
			assert.Equal(t, "", parentOf(sp), "NATS fired the tick: the worker's process span is the root")
			tags := sp.tags()
			assert.Contains(t, tags, "pollgrid.tick.intended_time")
			assert.Contains(t, tags, "pollgrid.tick.lateness_seconds")
			t.Logf("the tick's span: pollgrid.tick.intended_time=%v pollgrid.tick.lateness_seconds=%v",
				tags["pollgrid.tick.intended_time"], tags["pollgrid.tick.lateness_seconds"])
			continue
		}
		switch op {
		case "lease acquire", "state commit", "GET", "publish " + signalSubject:
			assert.Equal(t, "process "+tick, parentOf(sp), "%s is a child of the tick's span", sp.OperationName)
		case "process " + signalSubject:
			assert.Equal(t, "publish "+signalSubject, parentOf(sp), "the consumer's span is a child of its signal's publish")
		}
	}
	sort.Strings(lines)
	t.Logf("Jaeger trace %s: %d spans:\n  %s", found.TraceID, len(found.Spans), strings.Join(lines, "\n  "))
	assert.Equal(t, map[string]int{"process " + tick: 1, "lease acquire": 1, "GET": 1, "publish " + signalSubject: 2,
		"state commit": 1, "process " + signalSubject: 2}, count)

	// The aggregator's flush that wrote the poll's report: a trace of its
	// own, linked to the poll's span.
	require.NotEmpty(t, process.SpanID)
	require.Eventually(t, func() bool {
		for _, tr := range search("pollgrid-aggregator", "process "+bus.ReportPrefix+".*") {
			for _, sp := range tr.Spans {
				for _, ref := range sp.References {
					if ref.TraceID == found.TraceID && ref.SpanID == process.SpanID {
						t.Logf("Jaeger: the flush span %q %s of trace %s links to the poll's span (%s); tags %v",
							sp.OperationName, sp.SpanID, tr.TraceID, ref.RefType, sp.tags())
						return true
					}
				}
			}
		}
		return false
	}, 30*time.Second, 500*time.Millisecond, "Jaeger shows no aggregator flush span linked to the poll's span")
}

// jaegerTrace is a trace as Jaeger's query API (/api/traces) returns it.
type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	ProcessID     string `json:"processID"`
	// References are the span's parent (CHILD_OF) and its links
	// (FOLLOWS_FROM), each with the trace it points into.
	References []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

func (tr jaegerTrace) service(sp jaegerSpan) string { return tr.Processes[sp.ProcessID].ServiceName }

func (sp jaegerSpan) tags() map[string]any {
	out := map[string]any{}
	for _, tag := range sp.Tags {
		out[tag.Key] = tag.Value
	}
	return out
}
