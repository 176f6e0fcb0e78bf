// Package connector defines what a connector is: a typed, validated config and
// a Poll that turns the upstream's current answer into items. Everything else
// (scheduling, leases, change detection, publishing) is the platform's job.
package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/pollgrid/pollgrid/pkg/egress"
)

// Connector polls one upstream API for one configured connector.
type Connector interface {
	// Poll fetches the upstream's current items. It must not retain state
	// between calls: everything it needs comes in through State, and
	// everything it wants kept goes out in Result.State. A returned error
	// fails the whole poll and moves no cursor.
	Poll(ctx context.Context, state State) (Result, error)
}

// State is what the platform keeps between polls of one connector.
type State struct {
	// Cursor is opaque to the platform: a timestamp, a page token, an id.
	Cursor string
	// ETag and LastModified are the validators of the last 200 answer, for
	// conditional requests.
	ETag         string
	LastModified string
}

// Item is one upstream object in a connector's own normalised form.
type Item struct {
	// ID identifies the item across polls (an alert id, an issue key).
	ID string
	// Version changes whenever the item changes (an updated timestamp, a
	// revision, a content hash). Unchanged versions publish nothing.
	Version string
	// Data is the item as JSON; it becomes the signal's data.
	Data json.RawMessage
}

// ItemError records one upstream item the connector could not turn into an
// Item. It fails that item, not the poll.
type ItemError struct {
	// ID is the item's id when it could be read, else a position such as "features[3]".
	ID  string
	Err error
}

// Result is what one successful Poll returns.
type Result struct {
	Items  []Item
	Failed []ItemError
	// State is stored once the poll's signals are acknowledged.
	State State
	// NotModified is true when the upstream said 304: nothing to do.
	NotModified bool
	// Complete says Items (with Failed) are the upstream's whole listing
	// now, every page read: an item seen before and absent now is gone, and
	// the platform publishes it once as deleted. A connector sets it only
	// when its config opts in (emit_deletes) and it read every page (never
	// when max_pages cut the listing short).
	Complete bool
}

// Deps are the shared resources a connector may use. They are built once per
// process and shared by every connector.
type Deps struct {
	// HTTP is the client every connector must use for upstream calls. It is
	// nil while a config is only validated (Registry.Validate); connectors
	// take it with upstream.Client, which falls back to a new polite client.
	HTTP *http.Client
	// Logger carries the process's redaction of secrets.
	Logger *slog.Logger
	// AllowHosts are the connector's config.allow_hosts: the hosts and
	// CIDRs it may reach although the outbound guard refuses loopback,
	// link-local, private and unspecified addresses by default. Build sets
	// it; upstream.Client gives the connector a client that honours it.
	AllowHosts egress.Allowlist

	// validating is set by Registry.Validate and ValidateDecoded: Build
	// then stops once the config is checked, without building a connector
	// nobody will poll.
	validating bool
	// describe is set by Registry.Spec: Build then only hands over the
	// config type's Spec.
	describe *described
	// decoded is set by Registry.ValidateDecoded: the config raw encodes,
	// decoded already, which Build checks against the Spec instead of
	// decoding raw again.
	decoded map[string]any
}

// described is what Build hands Registry.Spec.
type described struct {
	spec Spec
	ok   bool
}

// Factory builds a connector from its type-specific config (the "config"
// object of connectors.json, with ${VAR} already resolved). It decodes and
// validates without doing I/O; its error names the field and the fix.
type Factory func(raw json.RawMessage, deps Deps) (Connector, error)

// Configurable is what Build asks of a connector's config type, through its
// pointer: Spec describes its fields (the same Spec whatever the value),
// ApplyDefaults fills the fields left out, then Validate reports every
// problem the Spec cannot tell, each naming the field and the fix. None
// does I/O.
type Configurable interface {
	Spec() Spec
	ApplyDefaults()
	Validate() error
}

// Build is the one way a factory turns its raw config into a connector:
// check it against C's Spec (unknown fields, kinds, required fields,
// ranges, choices, secrets), decode it strictly into C (DecodeConfig),
// apply C's defaults, validate, and only then call build with the checked
// config. Every problem of the Spec and of Validate is reported at once;
// a config whose fields or kinds are wrong is not decoded, nor validated.
// Deps come with a logger that is never nil and carries connector_type;
// Deps.HTTP is passed as given (nil while a config is only being
// validated).
//
// Every type accepts the fields every connector has, which C does not
// declare: "allow_hosts" (AllowHosts) goes to Deps.AllowHosts.
//
//	func New(raw json.RawMessage, deps connector.Deps) (connector.Connector, error) {
//		return connector.Build(TypeName, raw, deps, func(cfg Config, deps connector.Deps) (connector.Connector, error) {
//			return &poller{url: cfg.BaseURL + "/items", client: upstream.Client(deps)}, nil
//		})
//	}
func Build[C any, P interface {
	*C
	Configurable
}](typeName string, raw json.RawMessage, deps Deps, build func(cfg C, deps Deps) (Connector, error)) (Connector, error) {
	var cfg C
	spec := P(&cfg).Spec()
	if deps.describe != nil {
		*deps.describe = described{spec: spec.WithShared(), ok: true}
		return nil, nil
	}
	raw, allow, allowErr := cutAllowHosts(raw)
	obj, isObject := deps.decoded, deps.decoded != nil
	if !isObject {
		obj, isObject = decodeObject(raw)
	}
	var problems []error
	decodable := true
	if isObject {
		problems, decodable = spec.check(obj)
	}
	if allowErr != nil {
		problems = append([]error{allowErr}, problems...)
	}
	if !decodable {
		return nil, errors.Join(problems...)
	}
	if err := decodeStrict(raw, &cfg); err != nil { // the spec and C disagree: TestSpecAndStructAgree
		return nil, errors.Join(append(problems, err)...)
	}
	P(&cfg).ApplyDefaults()
	if err := errors.Join(append(problems, P(&cfg).Validate())...); err != nil {
		return nil, err
	}
	deps.AllowHosts = deps.AllowHosts.Merge(allow)
	if deps.validating {
		return nil, nil
	}
	deps.Logger = typeLogger(deps.Logger, typeName)
	return build(cfg, deps)
}

// cutAllowHosts takes "allow_hosts" out of a type-specific config, so that
// the type's own strict decoding never sees it, and parses it. A config
// that is not a JSON object is returned as is, for DecodeConfig to report.
func cutAllowHosts(raw json.RawMessage) (json.RawMessage, egress.Allowlist, error) {
	if !bytes.Contains(raw, []byte(`"`+AllowHostsField+`"`)) {
		return raw, egress.Allowlist{}, nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return raw, egress.Allowlist{}, nil
	}
	value, ok := obj[AllowHostsField]
	if !ok {
		return raw, egress.Allowlist{}, nil
	}
	delete(obj, AllowHostsField)
	rest, err := json.Marshal(obj)
	if err != nil { // cannot happen: obj was decoded from JSON
		return raw, egress.Allowlist{}, fmt.Errorf("config: %w", err)
	}
	var entries []string
	if bytes.Equal(bytes.TrimSpace(value), []byte("null")) {
		return rest, egress.Allowlist{}, nil
	}
	if json.Unmarshal(value, &entries) != nil {
		return rest, egress.Allowlist{}, errors.New(`config.allow_hosts: must be a list of hosts, addresses or CIDRs, like ["api.internal", "10.0.0.0/8"]`)
	}
	allow, err := egress.Parse("config."+AllowHostsField, entries)
	return rest, allow, err
}

// typeLoggers holds the logger of each (process logger, type): a worker
// builds one connector per configured connector, thousands of one type, and
// they all log alike.
var typeLoggers sync.Map // typeLoggerKey -> *slog.Logger

type typeLoggerKey struct {
	base     *slog.Logger
	typeName string
}

func typeLogger(base *slog.Logger, typeName string) *slog.Logger {
	if base == nil {
		base = discard
	}
	key := typeLoggerKey{base, typeName}
	if l, ok := typeLoggers.Load(key); ok {
		return l.(*slog.Logger)
	}
	l, _ := typeLoggers.LoadOrStore(key, base.With("connector_type", typeName))
	return l.(*slog.Logger)
}

var discard = slog.New(slog.DiscardHandler)

// DecodeConfig strictly decodes a type-specific config into T: unknown fields
// and trailing data are errors. An empty raw config decodes as {}.
func DecodeConfig[T any](raw json.RawMessage) (T, error) {
	var cfg T
	err := decodeStrict(raw, &cfg)
	return cfg, err
}

func decodeStrict(raw json.RawMessage, cfg any) error {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("decode config: trailing data after the object")
	}
	return nil
}
