package config

import (
	"github.com/pollgrid/pollgrid/pkg/connector"
)

// namePattern is what a connector name may hold: it is a NATS subject token.
const namePattern = `^[a-z0-9_-]+$`

// EntrySpec describes the fields of one connector of connectors.json,
// once: the fields the validator knows and their order, and the docs'
// config reference and the JSON Schema (Schema) come from it. Its
// limits are the constants the validator checks; its messages are the
// validator's own. "config" lists only what every type accepts
// (allow_hosts): each type's Spec has the rest.
func EntrySpec() connector.Spec { return entrySpec }

var entrySpec = connector.Spec{
	Summary: "One connector: what it polls (type and config) and how often.",
	Fields: []connector.Field{
		{Name: "name", Kind: connector.String, Required: true, Pattern: namePattern, MaxLength: maxNameLength, Example: "noaa-alerts-ca",
			Description: "Unique; a NATS subject token (it names the connector in subjects, keys and logs): lowercase letters, " +
				"digits, `-`, `_`; at most 64 characters."},
		{Name: "type", Kind: connector.String, Required: true, Example: "weather-noaa",
			Description: "A registered connector type (see `pkg/connectors/builtin`); its README lists its config."},
		{Name: "enabled", Kind: connector.Bool, Default: true,
			Description: "Disabled connectors are not scheduled."},
		{Name: "interval", Kind: connector.Duration, Default: shortDuration(defaultInterval),
			Description: "The time between polls: a Go duration in whole seconds, at least `1s` (ticks fire on whole seconds)."},
		{Name: "adaptive", Kind: connector.Object, Example: map[string]string{"min": "10s", "max": "10m"},
			Description: "Opt-in: the time between polls adapts to how often the upstream changes, from `interval`, " +
				"shorter after a poll that finds changes and longer after one that finds none, within these bounds; " +
				"see [Adaptive intervals](#adaptive-intervals).",
			Fields: []connector.Field{
				{Name: "min", Kind: connector.Duration, Required: true, Example: "10s",
					Description: "The shortest effective interval: whole seconds, at least `1s`, shorter than `max`, at most `interval`."},
				{Name: "max", Kind: connector.Duration, Required: true, Example: "10m",
					Description: "The longest effective interval: whole seconds, at least `interval`."},
			}},
		{Name: "jitter", Kind: connector.Duration, Default: "0s",
			Description: "Ignored (the scheduler logs a warning): each connector's ticks keep a fixed phase in its interval, " +
				"which spreads connectors evenly; less than `interval`."},
		{Name: "timeout", Kind: connector.Duration, DefaultText: "`min(10s, interval/2)`; adaptive: `min(10s, adaptive.min/2)`",
			Description: "Bounds one attempt; shorter than `interval`, and than `adaptive.min` when adaptive."},
		{Name: "retries", Kind: connector.Object, Description: "How a failed poll is retried within one tick.", Fields: []connector.Field{
			{Name: "max", Kind: connector.Int, Range: connector.Between(0, maxRetries), Default: defaultRetries,
				Description: "Attempts after the first, within one poll."},
			{Name: "backoff", Kind: connector.Duration, Default: shortDuration(defaultBackoff),
				Description: "The first retry waits up to this, doubling, with full jitter; at most `interval`."},
		}},
		{Name: "lease_ttl", Kind: connector.Duration, Default: shortDuration(defaultLeaseTTL),
			Description: "At least `1s`; renewed while a poll runs, it bounds the takeover delay after a worker dies."},
		{Name: "seen_cap", Kind: connector.Int, Range: connector.Between(1, maxSeenCap), Default: DefaultSeenCap,
			Description: "Items the connector remembers (version and change sequence, about 90 bytes of Redis each); " +
				"see [State and leases](#state-and-leases-redis)."},
		{Name: "budget", Kind: connector.String, Pattern: namePattern, Example: "github-main",
			Description: "A rate-limit budget of the file's `budgets` that this connector shares with others across every worker: " +
				"each upstream request (pages and retries included) draws from it first; see [Budgets](#rate-limit-budgets)."},
		{Name: "labels", Kind: connector.Map, Example: map[string]string{"team": "wx"},
			Description: "Free-form key/values for your own bookkeeping: pollgrid checks and keeps them, and copies them nowhere."},
		{Name: "config", Kind: connector.Object, DefaultText: "`{}`", Fields: []connector.Field{connector.AllowHosts},
			Description: "Type-specific; each connector's README lists its fields."},
	},
}

// fields are the keys a connector may have, in the order they are checked.
var fields = fieldNames(entrySpec.Fields)

// adaptiveFields are the keys of "adaptive".
var adaptiveFields = func() []string {
	f, _ := entrySpec.Lookup("adaptive")
	return fieldNames(f.Fields)
}()

// retryFields are the keys of "retries".
var retryFields = func() []string {
	f, _ := entrySpec.Lookup("retries")
	return fieldNames(f.Fields)
}()

func fieldNames(list []connector.Field) []string {
	names := make([]string, len(list))
	for i, f := range list {
		names[i] = f.Name
	}
	return names
}
