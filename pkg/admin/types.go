package admin

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/pollgrid/pollgrid/pkg/bus"
)

// ServiceName is the micro service every pollgrid process registers.
const ServiceName = "pollgrid-admin"

// APIVersion is the version of the JSON below (semver, as micro wants).
const APIVersion = "1.0.0"

// The verbs, each on pollgrid.admin.<verb>.
const (
	VerbList    = "list"
	VerbStatus  = "status"
	VerbTrigger = "trigger"
	VerbPause   = "pause"
	VerbResume  = "resume"
	VerbReset   = "reset"
	VerbReload  = "reload"

	// The control plane: the connector catalog (pkg/catalog), served by
	// the scheduler, which follows the catalog's bucket.
	VerbApply       = "apply"
	VerbDefinitions = "definitions"
	VerbDelete      = "delete"
	VerbGet         = "get"
	VerbHistory     = "history"
	VerbRollback    = "rollback"
)

// ServedBy names the service that serves a verb. list and status are the
// aggregator's: it owns health and freshness. pause and resume are the
// scheduler's: it owns the message schedules a pause removes. trigger and
// reset are the workers': they run polls and hold leases. reload is served
// by every process, each replying for itself. The catalog's verbs (apply,
// definitions, delete, get, history, rollback) are the scheduler's: it
// follows the catalog, and plans an apply from what it holds.
func ServedBy(verb string) string {
	switch verb {
	case VerbList, VerbStatus:
		return "aggregator"
	case VerbPause, VerbResume, VerbApply, VerbDefinitions, VerbDelete, VerbGet, VerbHistory, VerbRollback:
		return "scheduler"
	case VerbTrigger, VerbReset:
		return "worker"
	case VerbReload:
		return "every service"
	}
	return "pollgrid service"
}

// Subject is where a verb is asked.
func Subject(verb string) string { return bus.AdminPrefix + "." + verb }

// Health of a connector, worst first: the order of list and of the status
// page.
const (
	HealthFailing  = "failing"  // its last poll failed (it may be backing off)
	HealthStale    = "stale"    // no poll ran for StaleAfter intervals
	HealthNew      = "new"      // never polled yet
	HealthPaused   = "paused"   // paused by an operator
	HealthOK       = "ok"       // its last poll succeeded
	HealthDisabled = "disabled" // "enabled": false in the config
)

// Healths lists every health, worst first: the order of list and of the
// status page.
func Healths() []string {
	return []string{HealthFailing, HealthStale, HealthNew, HealthPaused, HealthOK, HealthDisabled}
}

// HealthRank is a health's place in Healths; -1 for none.
func HealthRank(health string) int { return slices.Index(Healths(), health) }

// NameRequest names one connector: status, trigger, resume.
type NameRequest struct {
	Name string `json:"name"`
}

// PauseRequest pauses one connector; By says who, for status.
type PauseRequest struct {
	Name string `json:"name"`
	By   string `json:"by,omitempty"`
}

// ResetRequest resets one connector. Confirm must repeat the name: a reset
// publishes every current item again, and a stray request must not.
type ResetRequest struct {
	Name    string `json:"name"`
	Confirm string `json:"confirm"`
}

// ListRequest asks for a page of connectors, worst health first, then by
// name. Every filter is optional.
type ListRequest struct {
	// Query keeps connectors whose name contains it.
	Query string `json:"query,omitempty"`
	// Type keeps connectors of that type.
	Type string `json:"type,omitempty"`
	// Health keeps connectors of that health (HealthFailing, ...).
	Health string `json:"health,omitempty"`
	// Offset and Limit page the result; Limit 0 means DefaultLimit, and
	// at most MaxLimit (a NATS message is 1 MB by default).
	Offset int `json:"offset,omitempty"`
	Limit  int `json:"limit,omitempty"`
}

// Page sizes of list.
const (
	DefaultLimit = 500
	MaxLimit     = 1000
)

// Connector is one row of list: config, state, metrics and freshness.
type Connector struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Enabled  bool   `json:"enabled"`
	Paused   bool   `json:"paused"`
	Interval string `json:"interval"`
	// Adaptive is an adaptive connector's bounds, "10s..10m", and
	// EffectiveInterval the interval its polls come at now (whole seconds,
	// from its state: Interval before its first poll); both absent when its
	// interval is fixed.
	Adaptive          string `json:"adaptive,omitempty"`
	EffectiveInterval string `json:"effective_interval,omitempty"`
	// Health is one of the Health* values.
	Health  string `json:"health"`
	Healthy bool   `json:"healthy"`
	Stale   bool   `json:"stale"`
	// LastPoll is the last poll that ran (success or failure).
	LastPoll    *time.Time `json:"last_poll,omitempty"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	// NextDue is when its next tick fires (none while paused or disabled).
	NextDue *time.Time `json:"next_due,omitempty"`
	// StalenessSeconds is now - last success (absent before the first).
	StalenessSeconds *float64 `json:"staleness_seconds,omitempty"`
	// MissedIntervals counts whole intervals without a poll since the
	// connector was last due (its last poll, the end of its back-off, or
	// its resume).
	MissedIntervals     int64      `json:"missed_intervals"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	BackoffUntil        *time.Time `json:"backoff_until,omitempty"`
	// BackoffSeconds is how long it still backs off, and BackoffBy whose
	// wait it is: "upstream" (Retry-After, a rate limit) or "backoff"
	// (ours, after failed polls).
	BackoffSeconds    float64    `json:"backoff_seconds,omitempty"`
	BackoffBy         string     `json:"backoff_by,omitempty"`
	PausedAt          *time.Time `json:"paused_at,omitempty"`
	PausedBy          string     `json:"paused_by,omitempty"`
	Polls             int64      `json:"polls"`
	Failures          int64      `json:"failures"`
	SuccessRate       float64    `json:"success_rate"`
	LatencyP95Seconds float64    `json:"latency_p95_seconds"`
}

// ListReply is a page of connectors.
type ListReply struct {
	Connectors []Connector `json:"connectors"`
	// Total counts the connectors that match the filters; Offset is this
	// page's start.
	Total  int `json:"total"`
	Offset int `json:"offset"`
	// Counts counts every connector by health, before the filters;
	// Types lists every connector type of the config.
	Counts map[string]int `json:"counts"`
	Types  []string       `json:"types"`
	// StaleAfter is the number of missed intervals that makes a connector
	// stale (AGGREGATOR_STALE_AFTER); HealthyWindow the healthy window.
	StaleAfter    int       `json:"stale_after"`
	HealthyWindow string    `json:"healthy_window"`
	At            time.Time `json:"at"`
}

// Status is one connector in full.
type Status struct {
	Connector
	// Cursor, ETag and LastModified are what the next poll starts from.
	Cursor       string `json:"cursor,omitempty"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	// Generation counts its resets.
	Generation uint64 `json:"generation"`
	// SeenItems counts the item versions it remembers.
	SeenItems int64     `json:"seen_items"`
	Lease     LeaseInfo `json:"lease"`
	// Recent are its latest polls, oldest first (at most 100).
	Recent []Poll `json:"recent"`
	// RateLimited counts the recent polls refused with 429.
	RateLimited    int     `json:"rate_limited"`
	Skipped        int64   `json:"skipped"`
	ItemsPublished int64   `json:"items_published"`
	LatencyAvg     float64 `json:"latency_avg_seconds"`
	// Budget is the rate-limit budget it draws from; absent when none.
	Budget *BudgetUse `json:"budget,omitempty"`
}

// BudgetUse is the rate-limit budget a connector draws from, and what it
// has left.
type BudgetUse struct {
	Name string `json:"name"`
	// Rate is the budget as the file says it: "60 per 1m (burst 5)".
	Rate string `json:"rate"`
	// Connectors counts the enabled connectors sharing it, and
	// FairEverySeconds how often each gets a request when they all want
	// more than it has.
	Connectors       int     `json:"connectors"`
	FairEverySeconds float64 `json:"fair_every_seconds"`
	// Remaining is how many requests it allows at once now; -1 when Redis
	// could not be read (Error says why).
	Remaining int `json:"remaining"`
	// NextAt is when it allows the next request (now, unless it is spent
	// or the upstream said to wait); FullAt when it is whole again.
	NextAt *time.Time `json:"next_at,omitempty"`
	FullAt *time.Time `json:"full_at,omitempty"`
	Error  string     `json:"error,omitempty"`
}

// Summary says it in one line, the same in pollctl and on the status page:
// "github-main: 60 per 1m (burst 5), shared by 20 connectors (a request
// every 20s each); spent: the next request in 14s".
func (b BudgetUse) Summary(now time.Time) string {
	s := fmt.Sprintf("%s: %s, shared by %d connectors (a request every %s each when all want more)", b.Name, b.Rate,
		b.Connectors, ShortDuration(time.Duration(b.FairEverySeconds*float64(time.Second)).Round(time.Second)))
	switch {
	case b.Remaining < 0:
		return s + "; use unknown (" + b.Error + ")"
	case b.Remaining == 0 && b.NextAt != nil:
		return s + "; spent: the next request in " + ShortDuration(b.NextAt.Sub(now).Round(time.Second))
	case b.FullAt != nil && b.FullAt.After(now):
		return fmt.Sprintf("%s; %d left now, whole in %s", s, b.Remaining, ShortDuration(b.FullAt.Sub(now).Round(time.Second)))
	}
	return fmt.Sprintf("%s; %d left now (whole)", s, b.Remaining)
}

// LeaseInfo is who holds a connector's lease.
type LeaseInfo struct {
	// Holder is the worker polling it now, "" when free.
	Holder string `json:"holder,omitempty"`
	Token  uint64 `json:"token,omitempty"`
	// ExpiresInSeconds is the held lease's time left.
	ExpiresInSeconds float64 `json:"expires_in_seconds,omitempty"`
	// Fence is the newest fencing token taken.
	Fence uint64 `json:"fence"`
}

// Poll is one poll, as reported.
type Poll struct {
	StartedAt       time.Time `json:"started_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	// Outcome is success, failure or skipped.
	Outcome        string `json:"outcome"`
	Error          string `json:"error,omitempty"`
	ItemsFetched   int64  `json:"items_fetched"`
	ItemsPublished int64  `json:"items_published"`
	NotModified    bool   `json:"not_modified,omitempty"`
	RateLimited    bool   `json:"rate_limited,omitempty"`
	Worker         string `json:"worker,omitempty"`
	TraceID        string `json:"trace_id,omitempty"`
}

// TriggerReply says how a triggered poll ended.
type TriggerReply struct {
	Connector string `json:"connector"`
	Worker    string `json:"worker"`
	Poll
	FinishedAt   time.Time `json:"finished_at"`
	ItemsFailed  int64     `json:"items_failed"`
	FencingToken uint64    `json:"fencing_token"`
	// WaitedSeconds is how long it waited for a running poll's lease.
	WaitedSeconds float64 `json:"waited_seconds,omitempty"`
}

// PauseReply says what pause did.
type PauseReply struct {
	Connector string    `json:"connector"`
	Paused    bool      `json:"paused"`
	Since     time.Time `json:"since"`
	By        string    `json:"by,omitempty"`
	// Already is true when it was paused before (Since and By are the
	// first pause's).
	Already bool `json:"already"`
}

// ResumeReply says what resume did.
type ResumeReply struct {
	Connector string `json:"connector"`
	// WasPaused is false when it was not paused: nothing changed.
	WasPaused bool       `json:"was_paused"`
	PausedAt  *time.Time `json:"paused_at,omitempty"`
	// Scheduled is true when its schedule is installed again (false for a
	// connector the config disables); FirstTick when it was sent a tick at
	// once because it is overdue.
	Scheduled bool `json:"scheduled"`
	FirstTick bool `json:"first_tick"`
}

// ResetReply says what reset did.
type ResetReply struct {
	Connector string `json:"connector"`
	// Generation is the connector's generation from now on.
	Generation     uint64  `json:"generation"`
	ItemsForgotten int64   `json:"items_forgotten"`
	FencingToken   uint64  `json:"fencing_token"`
	WaitedSeconds  float64 `json:"waited_seconds,omitempty"`
}

// ReloadReply is one process's answer to reload.
type ReloadReply struct {
	// Service is scheduler, worker or aggregator; Replica its id
	// (SCHEDULER_ID, WORKER_ID, host-pid); Instance its micro instance id.
	Service  string `json:"service"`
	Replica  string `json:"replica"`
	Instance string `json:"instance"`
	// OK is false when the config was rejected: the running one stays.
	OK         bool      `json:"ok"`
	Source     string    `json:"source,omitempty"`
	Connectors int       `json:"connectors"`
	Enabled    int       `json:"enabled"`
	Error      string    `json:"error,omitempty"`
	Problems   []Problem `json:"problems,omitempty"`
}

// Problem is one thing wrong with a config.
type Problem struct {
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

// The kinds of definition in the catalog (pkg/catalog's Kind).
const (
	KindConnector = "connectors"
	KindBudget    = "budgets"
)

// Ref names one definition of the catalog: Kind is KindConnector or
// KindBudget; Revision, where given, is its latest revision in the
// catalog (a condition, in a delete).
type Ref struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Revision uint64 `json:"revision,omitempty"`
	// Sum is a digest of the value (definitions lists it): pollctl apply
	// checks and sends only what differs from it.
	Sum string `json:"sum,omitempty"`
}

// ApplyRequest writes a part of a connectors file to the catalog, as a
// difference: the definitions new or changed are written, each on
// condition of the revision it replaces. Connectors are a part of the
// file (a NATS message is 1 MiB by default: pollctl sends a big file in
// several requests), Budgets all of the file's, so that every request is
// checked as a file of its own (config.ParseDefinitions).
type ApplyRequest struct {
	// Connectors are entries of the file's "connectors", as written: each
	// valid JSON (the client sends them as they are, AppendRaw).
	Connectors []json.RawMessage `json:"connectors"`
	// Budgets are the file's "budgets", as written.
	Budgets map[string]json.RawMessage `json:"budgets,omitempty"`
	// DryRun computes the difference and writes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// ApplyReply is what an apply wrote (or, DryRun, would write). An apply
// never deletes: pollctl apply --prune asks definitions and delete.
type ApplyReply struct {
	Created   []Ref `json:"created,omitempty"`
	Changed   []Ref `json:"changed,omitempty"`
	Deleted   []Ref `json:"deleted,omitempty"`
	Unchanged int   `json:"unchanged"`
	DryRun    bool  `json:"dry_run,omitempty"`
}

// DefinitionsRequest asks for a page of the catalog's definitions,
// budgets first, then connectors, each by name.
type DefinitionsRequest struct {
	// Offset and Limit page the result; Limit 0 means MaxDefinitions.
	Offset int `json:"offset,omitempty"`
	Limit  int `json:"limit,omitempty"`
	// Refs, if any, asks for these definitions only (their kind and
	// name; at most MaxDefinitions, no paging): those the catalog holds
	// are returned.
	Refs []Ref `json:"refs,omitempty"`
}

// MaxDefinitions is the largest page of definitions: a reply stays well
// under NATS's 1 MiB (a ref with its digest is at most about 160 bytes).
const MaxDefinitions = 4000

// DefinitionsReply is a page of definitions with their latest revisions.
type DefinitionsReply struct {
	Refs []Ref `json:"refs"`
	// Total counts every definition; Offset is this page's start.
	Total  int `json:"total"`
	Offset int `json:"offset"`
}

// DeleteRequest deletes definitions, connectors first, each on condition
// that its latest revision is still Revision (0: whatever it is). Their
// history stays: rollback restores one.
type DeleteRequest struct {
	Refs []Ref `json:"refs"`
}

// DeleteReply lists what was deleted, and what was already gone.
type DeleteReply struct {
	Deleted []Ref `json:"deleted,omitempty"`
	Missing []Ref `json:"missing,omitempty"`
}

// DefinitionRequest names one definition: get, history. Kind is
// KindConnector when empty.
type DefinitionRequest struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

// Revision is one revision of one definition.
type Revision struct {
	Revision uint64    `json:"revision"`
	Created  time.Time `json:"created"`
	// Operation is "put" or "delete".
	Operation string `json:"operation"`
	// Value is the definition's JSON text as written (${VAR} references
	// unresolved), in a string so that its keys keep their order; empty
	// for a deletion.
	Value string `json:"value,omitempty"`
}

// The operations of a revision.
const (
	OperationPut    = "put"
	OperationDelete = "delete"
)

// Definition is one definition's latest revision (get).
type Definition struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	Revision
}

// HistoryReply is every revision the catalog keeps of a definition,
// oldest first.
type HistoryReply struct {
	Kind      string     `json:"kind"`
	Name      string     `json:"name"`
	Revisions []Revision `json:"revisions"`
}

// RollbackRequest writes an older revision's value as a definition's next
// revision; Revision 0 means the value before the latest revision.
type RollbackRequest struct {
	Name     string `json:"name"`
	Kind     string `json:"kind,omitempty"`
	Revision uint64 `json:"revision,omitempty"`
}

// RollbackReply says what rollback wrote.
type RollbackReply struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Restored is the revision whose value was written again, Revision the
	// new revision; Unchanged is true when the latest revision had that
	// value already (nothing written, Revision is the latest).
	Restored  uint64 `json:"restored"`
	Revision  uint64 `json:"revision"`
	Unchanged bool   `json:"unchanged,omitempty"`
}
