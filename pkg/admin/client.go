package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/sync/errgroup"
)

// ErrNoService means no process serves the verb: nothing answered.
var ErrNoService = errors.New("no pollgrid service answers")

// Client asks the admin service. It is safe for concurrent use.
type Client struct {
	nc *nats.Conn
	// Timeout bounds a request whose context has no deadline.
	Timeout time.Duration
}

// NewClient returns a client on nc; timeout 0 means 30s (a trigger waits
// for a whole poll).
func NewClient(nc *nats.Conn, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Client{nc: nc, Timeout: timeout}
}

// MaxPayload is the largest request the NATS server takes, in bytes.
func (c *Client) MaxPayload() int64 { return c.nc.MaxPayload() }

// List returns one page of connectors.
func (c *Client) List(ctx context.Context, req ListRequest) (ListReply, error) {
	var r ListReply
	return r, c.call(ctx, VerbList, req, &r)
}

// ListAll pages through every connector that matches req.
func (c *Client) ListAll(ctx context.Context, req ListRequest) (ListReply, error) {
	req.Limit = MaxLimit
	var all ListReply
	for {
		page, err := c.List(ctx, req)
		if err != nil {
			return all, err
		}
		connectors := append(all.Connectors, page.Connectors...)
		all = page
		all.Connectors, all.Offset = connectors, 0
		req.Offset += len(page.Connectors)
		if len(page.Connectors) == 0 || req.Offset >= page.Total {
			return all, nil
		}
	}
}

// Status returns one connector in full.
func (c *Client) Status(ctx context.Context, name string) (Status, error) {
	var r Status
	return r, c.call(ctx, VerbStatus, NameRequest{Name: name}, &r)
}

// Trigger polls a connector now and returns how the poll ended.
func (c *Client) Trigger(ctx context.Context, name string) (TriggerReply, error) {
	var r TriggerReply
	return r, c.call(ctx, VerbTrigger, NameRequest{Name: name}, &r)
}

// Pause pauses a connector.
func (c *Client) Pause(ctx context.Context, name, by string) (PauseReply, error) {
	var r PauseReply
	return r, c.call(ctx, VerbPause, PauseRequest{Name: name, By: by}, &r)
}

// Resume resumes a connector.
func (c *Client) Resume(ctx context.Context, name string) (ResumeReply, error) {
	var r ResumeReply
	return r, c.call(ctx, VerbResume, NameRequest{Name: name}, &r)
}

// Reset forgets a connector's cursor and seen versions; confirm must be
// its name.
func (c *Client) Reset(ctx context.Context, name, confirm string) (ResetReply, error) {
	var r ResetReply
	return r, c.call(ctx, VerbReset, ResetRequest{Name: name, Confirm: confirm}, &r)
}

// Apply writes a part of a connectors file to the catalog (ApplyRequest).
func (c *Client) Apply(ctx context.Context, req ApplyRequest) (ApplyReply, error) {
	var r ApplyReply
	return r, c.call(ctx, VerbApply, req, &r)
}

// Definitions returns one page of the catalog's definitions.
func (c *Client) Definitions(ctx context.Context, req DefinitionsRequest) (DefinitionsReply, error) {
	var r DefinitionsReply
	return r, c.call(ctx, VerbDefinitions, req, &r)
}

// AllDefinitions pages through every definition of the catalog.
func (c *Client) AllDefinitions(ctx context.Context) ([]Ref, error) {
	req := DefinitionsRequest{Limit: MaxDefinitions}
	var all []Ref
	for {
		page, err := c.Definitions(ctx, req)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Refs...)
		req.Offset += len(page.Refs)
		if len(page.Refs) == 0 || req.Offset >= page.Total {
			return all, nil
		}
	}
}

// HeldOf returns those of refs the catalog holds, with their revisions
// and digests, asking MaxDefinitions at a time, four requests at once.
func (c *Client) HeldOf(ctx context.Context, refs []Ref) ([]Ref, error) {
	var mu sync.Mutex
	var held []Ref
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for batch := range slices.Chunk(refs, MaxDefinitions) {
		g.Go(func() error {
			page, err := c.Definitions(ctx, DefinitionsRequest{Refs: batch})
			mu.Lock()
			defer mu.Unlock()
			held = append(held, page.Refs...)
			return err
		})
	}
	return held, g.Wait()
}

// Delete deletes definitions, each on condition of its revision.
func (c *Client) Delete(ctx context.Context, refs []Ref) (DeleteReply, error) {
	var r DeleteReply
	return r, c.call(ctx, VerbDelete, DeleteRequest{Refs: refs}, &r)
}

// Get returns a definition's latest revision, as written.
func (c *Client) Get(ctx context.Context, kind, name string) (Definition, error) {
	var r Definition
	return r, c.call(ctx, VerbGet, DefinitionRequest{Name: name, Kind: kind}, &r)
}

// History returns every revision the catalog keeps of a definition.
func (c *Client) History(ctx context.Context, kind, name string) (HistoryReply, error) {
	var r HistoryReply
	return r, c.call(ctx, VerbHistory, DefinitionRequest{Name: name, Kind: kind}, &r)
}

// Rollback writes an older revision of a definition as its next one.
func (c *Client) Rollback(ctx context.Context, req RollbackRequest) (RollbackReply, error) {
	var r RollbackReply
	return r, c.call(ctx, VerbRollback, req, &r)
}

func (c *Client) call(ctx context.Context, verb string, req, reply any) error {
	var data []byte
	var err error
	if apply, ok := req.(ApplyRequest); ok {
		data, err = apply.encode() // a file's connectors, by the thousand
	} else {
		data, err = json.Marshal(req)
	}
	if err != nil {
		return fmt.Errorf("%s: encode request: %w", verb, err)
	}
	ctx, cancel := c.deadline(ctx)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, Subject(verb), data)
	if err != nil {
		return c.requestError(verb, err)
	}
	if err := replyError(msg); err != nil {
		return err
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("%s: the reply is not the JSON this client reads (is the service another version?): %w", verb, err)
	}
	return nil
}

func (c *Client) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.Timeout)
}

func (c *Client) requestError(verb string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w %s: start a %s (it serves %s), and check that this NATS user may publish there",
			ErrNoService, Subject(verb), ServedBy(verb), verb)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("no reply on %s within %s: the %s is busy or cut off (raise --timeout, or check its logs): %w",
			Subject(verb), c.Timeout, ServedBy(verb), err)
	case errors.Is(err, nats.ErrPermissionViolation):
		return fmt.Errorf("this NATS user may not publish to %s (see the permissions in docs/operate.md): %w", Subject(verb), err)
	}
	return fmt.Errorf("%s: %w", Subject(verb), err)
}

// replyError returns the *Error of a reply the service refused.
func replyError(msg *nats.Msg) error {
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return nil
	}
	e := &Error{}
	if json.Unmarshal(msg.Data, e) != nil || e.Message == "" {
		e.Message = msg.Header.Get(micro.ErrorHeader)
		e.Code, _ = strconv.Atoi(code)
	}
	return e
}

// discoveryQuiet is how long Reload waits, after the last process that
// answered discovery, for another: a process busy with polls (or a Go
// runtime in a long GC pause) can take a few hundred milliseconds to
// answer, and a process reload does not find is one it does not reload.
const discoveryQuiet = time.Second

// Instances lists the processes that run the admin service now, from
// micro's discovery ($SRV.INFO.pollgrid-admin). It waits for the first
// answer up to the client's timeout, then until no more come for quiet.
func (c *Client) Instances(ctx context.Context, quiet time.Duration) ([]micro.Info, error) {
	var out []micro.Info
	err := c.gather(ctx, "$SRV.INFO."+ServiceName, nil, quiet, func(m *nats.Msg) bool {
		var info micro.Info
		if json.Unmarshal(m.Data, &info) == nil {
			out = append(out, info)
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no process runs %s (is this the pollgrid NATS, and may this user publish to $SRV.>?)", ErrNoService, ServiceName)
	}
	return out, nil
}

// Reload asks every process to load its config again. It finds the
// processes first (Instances, waiting for discoveryQuiet without a new
// one) and waits for each one's answer; missing lists the instances that
// did not answer in time.
func (c *Client) Reload(ctx context.Context) (replies []ReloadReply, missing []string, err error) {
	ctx, cancel := c.deadline(ctx)
	defer cancel()
	instances, err := c.Instances(ctx, discoveryQuiet)
	if err != nil {
		return nil, nil, err
	}
	want := map[string]bool{}
	for _, in := range instances {
		for _, ep := range in.Endpoints {
			if ep.Name == VerbReload {
				want[in.ID] = true
			}
		}
	}
	if len(want) == 0 {
		return nil, nil, fmt.Errorf("%w %s: the processes found serve no reload (another version?)", ErrNoService, Subject(VerbReload))
	}
	err = c.gather(ctx, Subject(VerbReload), []byte("{}"), 0, func(m *nats.Msg) bool {
		var r ReloadReply
		if rerr := replyError(m); rerr != nil {
			r.Error = rerr.Error()
		} else if json.Unmarshal(m.Data, &r) != nil {
			return false
		}
		replies = append(replies, r)
		delete(want, r.Instance)
		return len(want) == 0
	})
	for _, in := range instances {
		if want[in.ID] {
			missing = append(missing, in.Metadata["service"]+" "+in.Metadata["instance"]+" ("+in.ID+")")
		}
	}
	if err != nil && len(replies) == 0 {
		return nil, missing, err
	}
	return replies, missing, nil
}

// gather publishes a request on subject and hands each reply to take until
// take says done, the context ends, or (quiet > 0) no reply came for quiet
// after the first. It fails only when nothing answered at all.
func (c *Client) gather(ctx context.Context, subject string, data []byte, quiet time.Duration, take func(*nats.Msg) (done bool)) error {
	ctx, cancel := c.deadline(ctx)
	defer cancel()
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.nc.PublishRequest(subject, inbox, data); err != nil {
		return c.requestError(subjectVerb(subject), err)
	}
	got := 0
	for {
		wait, stop := ctx, context.CancelFunc(func() {})
		if quiet > 0 && got > 0 {
			wait, stop = context.WithTimeout(ctx, quiet)
		}
		m, err := sub.NextMsgWithContext(wait)
		stop()
		switch {
		case err == nil:
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				return c.requestError(subjectVerb(subject), nats.ErrNoResponders)
			}
			got++
			if take(m) {
				return nil
			}
		case got > 0:
			return nil
		default:
			return c.requestError(subjectVerb(subject), err)
		}
	}
}

func subjectVerb(subject string) string {
	verb, _ := strings.CutPrefix(subject, Subject(""))
	return verb
}
