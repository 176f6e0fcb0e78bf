package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseReadsAdaptiveBounds(t *testing.T) {
	cfg, err := Parse([]byte(`{"connectors": [
		{"name": "a", "type": "alpha", "interval": "1m", "adaptive": {"min": "10s", "max": "10m"}},
		{"name": "b", "type": "alpha", "interval": "30s"}]}`), nil, fakeTypes{})
	require.NoError(t, err)
	a := cfg.Connectors[0]
	assert.Equal(t, Adaptive{Min: 10 * time.Second, Max: 10 * time.Minute}, a.Adaptive)
	assert.True(t, a.Adaptive.On())
	assert.Equal(t, time.Minute, a.Interval, "the interval is where the effective interval starts")
	assert.Equal(t, 5*time.Second, a.Timeout, "the default timeout is half the shortest interval it may reach")
	assert.Equal(t, Adaptive{}, cfg.Connectors[1].Adaptive)
	assert.False(t, cfg.Connectors[1].Adaptive.On())
	assert.Empty(t, cfg.Warnings)
}

func TestAdaptiveClamp(t *testing.T) {
	a := Adaptive{Min: 10 * time.Second, Max: 10 * time.Minute}
	tests := []struct {
		name     string
		d, floor time.Duration
		want     time.Duration
	}{
		{"within the bounds", time.Minute, 0, time.Minute},
		{"below min", time.Second, 0, 10 * time.Second},
		{"above max", time.Hour, 0, 10 * time.Minute},
		{"below the budget's fair share", 10 * time.Second, 20 * time.Second, 20 * time.Second},
		{"a fair share above max keeps max", 10 * time.Second, time.Hour, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, a.Clamp(tt.d, tt.floor))
		})
	}
}

func TestParseReportsEveryAdaptiveProblem(t *testing.T) {
	tests := []struct {
		name   string
		fields string
		want   []Problem
	}{
		{"not an object", `"adaptive": "10s"`,
			[]Problem{{"connectors[0].adaptive", `must be an object like {"min": "10s", "max": "10m"}, not a string`}}},
		{"bounds required", `"adaptive": {}`, []Problem{
			{"connectors[0].adaptive.min", `required (the shortest interval polls may come at, such as "10s")`},
			{"connectors[0].adaptive.max", `required (the longest interval polls may come at, such as "10m")`},
		}},
		{"misspelt field", `"adaptive": {"min": "10s", "max": "10m", "maxx": "1h"}`,
			[]Problem{{"connectors[0].adaptive.maxx", `unknown field (did you mean "max"?)`}}},
		{"not a duration", `"adaptive": {"min": 10, "max": "10m"}`,
			[]Problem{{"connectors[0].adaptive.min", `10 is not a duration (write "10s")`}}},
		{"min under a second", `"interval": "1s", "adaptive": {"min": "500ms", "max": "10m"}`,
			[]Problem{{"connectors[0].adaptive.min", `500ms is too short (at least 1s)`}}},
		{"not whole seconds", `"adaptive": {"min": "10s", "max": "90500ms"}`,
			[]Problem{{"connectors[0].adaptive.max", `90500ms is not a whole number of seconds (ticks fire on whole seconds: write e.g. 1m31s)`}}},
		{"min above max", `"adaptive": {"min": "30m", "max": "30s"}`,
			[]Problem{{"connectors[0].adaptive.min", `30m must be shorter than adaptive.max 30s (the interval moves between the two; for a fixed interval leave adaptive out)`}}},
		{"min equal to max", `"interval": "1m", "adaptive": {"min": "1m", "max": "1m"}`,
			[]Problem{{"connectors[0].adaptive.min", `1m must be shorter than adaptive.max 1m`}}},
		{"interval below min", `"interval": "5s", "adaptive": {"min": "10s", "max": "10m"}`,
			[]Problem{{"connectors[0].interval", `5s is outside adaptive 10s..10m: the effective interval starts from it (write one from 10s to 10m)`}}},
		{"default interval above max", `"adaptive": {"min": "10s", "max": "30s"}`,
			[]Problem{{"connectors[0].interval", `1m is outside adaptive 10s..30s`}}},
		{"timeout not shorter than min", `"interval": "1m", "timeout": "10s", "adaptive": {"min": "10s", "max": "10m"}`,
			[]Problem{{"connectors[0].timeout", `10s must be shorter than adaptive.min 10s`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(one(`"name": "a", "type": "alpha", `+tt.fields)), nil, fakeTypes{})
			problems := problemsOf(t, err)
			require.Len(t, problems.List, len(tt.want), "got:\n%s", err)
			for i, want := range tt.want {
				assert.Equal(t, want.Path, problems.List[i].Path)
				assert.Contains(t, problems.List[i].Message, want.Message)
			}
		})
	}
}

// A budget whose fair share is longer than an adaptive connector's min is
// valid, with a warning that says where the effective interval stops.
func TestParseWarnsOfABudgetThatCannotServeAdaptiveMin(t *testing.T) {
	file := `{"budgets": {"gh": {"limit": 60, "per": "1m", "burst": 5}}, "connectors": [`
	for i, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		if i > 0 {
			file += ","
		}
		switch n {
		case "a":
			file += `{"name": "a", "type": "alpha", "interval": "1m", "budget": "gh", "adaptive": {"min": "5s", "max": "10m"}}`
		case "b":
			file += `{"name": "b", "type": "alpha", "interval": "1m", "budget": "gh", "adaptive": {"min": "10s", "max": "10m"}}`
		case "c":
			file += `{"name": "c", "type": "alpha", "interval": "1m", "budget": "gh", "adaptive": {"min": "1m", "max": "10m"}}`
		default:
			file += `{"name": "` + n + `", "type": "alpha", "interval": "1m", "budget": "gh"}`
		}
	}
	cfg, err := Parse([]byte(file+`]}`), nil, fakeTypes{})
	require.NoError(t, err, "a budget too small for an adaptive min is valid: the interval stops at the fair share")
	require.Len(t, cfg.Warnings, 1, "10 a minute asked of 60 at the intervals: only the adaptive min is short")
	assert.Equal(t, "budgets.gh", cfg.Warnings[0].Path)
	assert.Equal(t, "60 per 1m (burst 5) shared by 10 connectors gives each a request every 10s: "+
		"the effective interval of its adaptive connectors a (min 5s) stops there, above their adaptive.min "+
		"(raise limit, set adaptive.min to at least 10s, or split the budget if the upstream allows)", cfg.Warnings[0].Message)

	// A min the fair share serves, or a disabled connector, says nothing.
	cfg, err = Parse([]byte(`{"budgets": {"gh": {"limit": 60, "per": "1m"}}, "connectors": [
		{"name": "a", "type": "alpha", "interval": "1m", "budget": "gh", "adaptive": {"min": "2s", "max": "10m"}},
		{"name": "b", "type": "alpha", "interval": "1m", "budget": "gh", "adaptive": {"min": "1s", "max": "10m"}, "enabled": false}]}`),
		nil, fakeTypes{})
	require.NoError(t, err)
	assert.Empty(t, cfg.Warnings, "one enabled connector: a request a second")
}

// The interval a connector's ticks fire at, from its effective interval.
func TestScheduledInterval(t *testing.T) {
	fixed := Connector{Interval: time.Minute}
	adaptive := Connector{Interval: time.Minute, Adaptive: Adaptive{Min: 10 * time.Second, Max: 10 * time.Minute}}
	tests := []struct {
		name string
		c    Connector
		e    time.Duration
		want time.Duration
	}{
		{"a fixed interval", fixed, 30 * time.Second, time.Minute},
		{"before the first poll: the interval", adaptive, 0, time.Minute},
		{"whole seconds", adaptive, 33750 * time.Millisecond, 34 * time.Second},
		{"within the bounds", adaptive, time.Hour, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.c.ScheduledInterval(tt.e))
		})
	}
}
