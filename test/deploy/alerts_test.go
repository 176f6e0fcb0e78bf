package deploy

import (
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// The example alert rules load with Prometheus's own rule parser (the one
// `promtool check rules` runs), prometheus.yml loads them, every metric
// they use is one pollgrid documents, and every runbook they link to is a
// section of docs/operate.md.
func TestPrometheusAlertRulesLoad(t *testing.T) {
	promql := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile(repoPath("deploy", "prometheus", "alerts.yml"), false, model.UTF8Validation, promql,
		slog.New(slog.DiscardHandler))
	require.Empty(t, errs, "deploy/prometheus/alerts.yml")
	require.NotEmpty(t, groups.Groups)

	raw, err := os.ReadFile(repoPath("deploy", "prometheus", "prometheus.yml"))
	require.NoError(t, err)
	var prom struct {
		RuleFiles []string `json:"rule_files"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &prom))
	assert.Contains(t, prom.RuleFiles, "alerts.yml", "prometheus.yml loads the rules")

	documented := documentedMetrics(t)
	operate, err := os.ReadFile(repoPath("docs", "operate.md"))
	require.NoError(t, err)
	anchors := markdownAnchors(string(operate))
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s holds alerts only", g.Name)
			alerts[r.Alert] = true
			expr, err := promql.ParseExpr(r.Expr)
			require.NoError(t, err, r.Alert)
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok && strings.HasPrefix(vs.Name, "pollgrid_") {
					assert.True(t, documented[vs.Name], "%s uses %s, which docs/observability.md does not list", r.Alert, vs.Name)
				}
				return nil
			})
			assert.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
			runbook, ok := strings.CutPrefix(r.Annotations["runbook"], "docs/operate.md#")
			assert.True(t, ok && anchors[runbook], "%s: runbook %q is no section of docs/operate.md", r.Alert, r.Annotations["runbook"])
		}
	}
	for _, want := range []string{"PollgridConnectorsFailing", "PollgridConnectorsStale", "PollgridUpstreamRateLimited"} {
		assert.True(t, alerts[want], want)
	}
}

// documentedMetrics are the metric names in docs/observability.md's tables.
func documentedMetrics(t *testing.T) map[string]bool {
	doc, err := os.ReadFile(repoPath("docs", "observability.md"))
	require.NoError(t, err)
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(pollgrid_[a-z0-9_]+)`").FindAllStringSubmatch(string(doc), -1) {
		out[m[1]] = true
	}
	require.NotEmpty(t, out)
	return out
}

// markdownAnchors are the GitHub anchors of a document's headings.
func markdownAnchors(doc string) map[string]bool {
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(doc, -1) {
		a := strings.ToLower(strings.TrimSpace(m[1]))
		a = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(a, "")
		out[strings.ReplaceAll(a, " ", "-")] = true
	}
	return out
}
