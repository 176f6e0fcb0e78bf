package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseLinksConnectorsToTheirBudget(t *testing.T) {
	cfg, err := Parse([]byte(`{"budgets": {"github-main": {"limit": 60, "per": "1m", "burst": 5}, "spare": {"limit": 10, "per": "1s"}},
		"connectors": [
			{"name": "a", "type": "alpha", "interval": "10s", "budget": "github-main"},
			{"name": "b", "type": "alpha", "interval": "10s", "budget": "github-main"},
			{"name": "c", "type": "alpha", "interval": "10s", "budget": "github-main", "enabled": false},
			{"name": "d", "type": "alpha"}]}`), nil, fakeTypes{})
	require.NoError(t, err)
	want := Budget{Name: "github-main", Limit: 60, Per: time.Minute, Burst: 5, Connectors: 2, Demand: 12}
	assert.Equal(t, want, cfg.Connectors[0].Budget)
	assert.Equal(t, want, cfg.Connectors[1].Budget)
	assert.Equal(t, "github-main", cfg.Connectors[2].Budget.Name, "a disabled connector keeps its budget but is not counted")
	assert.Equal(t, Budget{}, cfg.Connectors[3].Budget)
	assert.Equal(t, want, cfg.Budgets["github-main"])
	assert.Equal(t, Budget{Name: "spare", Limit: 10, Per: time.Second, Burst: 1}, cfg.Budgets["spare"], "burst defaults to 1")
	assert.Empty(t, cfg.Warnings, "12 a minute asked of 60")
	assert.Equal(t, 2*time.Second, want.Fair(), "60 a minute shared by 2: one each every 2 s")
}

func TestParseWarnsOfABudgetSmallerThanItsConnectorsAsk(t *testing.T) {
	var conns []string
	for _, n := range []string{"a", "b", "c", "d"} {
		conns = append(conns, `{"name": "`+n+`", "type": "alpha", "interval": "1s", "budget": "gh"}`)
	}
	cfg, err := Parse([]byte(`{"budgets": {"gh": {"limit": 60, "per": "1m", "burst": 5}}, "connectors": [`+
		conns[0]+","+conns[1]+","+conns[2]+","+conns[3]+`]}`), nil, fakeTypes{})
	require.NoError(t, err, "a small budget is valid: polls wait or are deferred")
	require.Len(t, cfg.Warnings, 1)
	assert.Equal(t, "budgets.gh", cfg.Warnings[0].Path)
	assert.Equal(t, "60 per 1m (burst 5) is less than its 4 connectors ask for at their intervals (240 per 1m, one request a poll): "+
		"each gets about one request every 4s (raise limit, lengthen their intervals, or split the budget if the upstream allows)",
		cfg.Warnings[0].Message)
}

func TestParseReportsEveryBudgetProblem(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []Problem
	}{
		{"unknown budget", `{"budgets": {"github-main": {"limit": 1, "per": "1s"}}, "connectors": [{"name": "a", "type": "alpha", "budget": "github-mian"}]}`,
			[]Problem{{"connectors[0].budget", `"github-mian" names no budget (known: github-main; did you mean "github-main"?; or add it to "budgets")`}}},
		{"no budgets at all", `{"connectors": [{"name": "a", "type": "alpha", "budget": "gh"}]}`,
			[]Problem{{"connectors[0].budget", `"gh" names no budget (declare it at the top of the file: "budgets": {"gh": {"limit": 5000, "per": "1h", "burst": 50}})`}}},
		{"budget not a string", `{"connectors": [{"name": "a", "type": "alpha", "budget": 5}]}`,
			[]Problem{{"connectors[0].budget", `must be the name of one of the file's "budgets", such as "github-main", not a number`}}},
		{"budgets not an object", `{"budgets": [], "connectors": [{"name": "a", "type": "alpha"}]}`,
			[]Problem{{"budgets", `must be an object of budgets by name, not a list`}}},
		{"budget fields", `{"budgets": {"gh": {"limit": 0, "per": "5", "brust": 2}}, "connectors": [{"name": "a", "type": "alpha"}]}`,
			[]Problem{
				{"budgets.gh.brust", `unknown field (did you mean "burst"?)`},
				{"budgets.gh.limit", `must be a whole number from 1 to 1000000, not 0`},
				{"budgets.gh.per", `"5" is not a duration (write "5s")`},
			}},
		{"per not a duration", `{"budgets": {"gh": {"limit": 1, "per": 60}}, "connectors": [{"name": "a", "type": "alpha"}]}`,
			[]Problem{{"budgets.gh.per", `must be a duration such as "1m" or "1h", not 60`}}},
		{"budget required fields", `{"budgets": {"gh": {}}, "connectors": [{"name": "a", "type": "alpha"}]}`,
			[]Problem{{"budgets.gh.limit", "required"}, {"budgets.gh.per", "required"}}},
		{"burst over the limit", `{"budgets": {"gh": {"limit": 5, "per": "1s", "burst": 6}}, "connectors": [{"name": "a", "type": "alpha"}]}`,
			[]Problem{{"budgets.gh.burst", "6 is more than limit 5 (at most the limit)"}}},
		{"per too short", `{"budgets": {"gh": {"limit": 5, "per": "500ms"}}, "connectors": [{"name": "a", "type": "alpha"}]}`,
			[]Problem{{"budgets.gh.per", "500ms must be whole seconds, at least 1s"}}},
		{"bad name", `{"budgets": {"GH": {"limit": 5, "per": "1s"}}, "connectors": [{"name": "a", "type": "alpha"}]}`,
			[]Problem{{"budgets.GH", `"GH" is not a valid budget name`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file), nil, fakeTypes{})
			problems := problemsOf(t, err)
			require.Len(t, problems.List, len(tt.want), "got:\n%s", err)
			for i, want := range tt.want {
				assert.Equal(t, want.Path, problems.List[i].Path)
				assert.Contains(t, problems.List[i].Message, want.Message)
			}
		})
	}
}
