package bus

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// Change kinds of a signal.
const (
	ChangeCreated = "created"
	ChangeUpdated = "updated"
	// ChangeDeleted: the item was in a complete listing before and is not
	// any more; the signal carries its last known version and data.
	ChangeDeleted = "deleted"
)

// EncodeTick marshals a tick as binary protobuf: ticks and reports go from
// machine to machine, and a worker decodes one tick per poll (pollctl and
// the proto file show them to people).
func EncodeTick(t *pollgridv1.Tick) ([]byte, error) { return proto.Marshal(t) }

// DecodeTick parses a tick and checks it names a connector.
func DecodeTick(data []byte) (*pollgridv1.Tick, error) {
	t := &pollgridv1.Tick{}
	if err := proto.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("decode tick: %w", err)
	}
	if !ValidToken(t.GetConnector()) || !ValidToken(t.GetConnectorType()) {
		return nil, fmt.Errorf("decode tick: connector %q / type %q are not valid names", t.GetConnector(), t.GetConnectorType())
	}
	return t, nil
}

// TickIntended is when a tick was meant to fire: its due_at when the
// scheduler published it, else (a tick NATS fired from the connector's
// message schedule) the Nats-Schedule-Next header minus the interval. ok is
// false when the tick says neither.
func TickIntended(h nats.Header, t *pollgridv1.Tick) (intended time.Time, ok bool) {
	if due := t.GetDueAt(); due != nil {
		return due.AsTime(), true
	}
	next, err := time.Parse(time.RFC3339Nano, h.Get(jetstream.ScheduleNextHeader))
	if err != nil || t.GetInterval() == nil {
		return time.Time{}, false
	}
	return next.Add(-t.GetInterval().AsDuration()), true
}

// EncodeReports marshals a batch of poll reports as binary protobuf.
func EncodeReports(b *pollgridv1.PollReports) ([]byte, error) { return proto.Marshal(b) }

// DecodeReports parses a batch of poll reports and checks that each names a
// connector.
func DecodeReports(data []byte) (*pollgridv1.PollReports, error) {
	b := &pollgridv1.PollReports{}
	if err := proto.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("decode poll reports: %w", err)
	}
	for i, r := range b.GetReports() {
		if !ValidToken(r.GetConnector()) {
			return nil, fmt.Errorf("decode poll reports: report %d: connector %q is not a valid name", i, r.GetConnector())
		}
	}
	return b, nil
}

// OutcomeName names a report's poll outcome the one way metrics labels,
// spans, logs and the admin API show it: success, failure or skipped
// (unknown for anything else).
func OutcomeName(o pollgridv1.PollOutcome) string {
	switch o {
	case pollgridv1.PollOutcome_POLL_OUTCOME_SUCCESS:
		return "success"
	case pollgridv1.PollOutcome_POLL_OUTCOME_FAILURE:
		return "failure"
	case pollgridv1.PollOutcome_POLL_OUTCOME_SKIPPED:
		return "skipped"
	}
	return "unknown"
}

// signalBody is the JSON body of a signal as DecodeSignal reads it: the
// fields of pollgridv1.Signal, snake_case, with data inlined as raw JSON
// (which protojson cannot do for a bytes field). appendSignalBody writes the
// same fields; a test keeps the three in step.
type signalBody struct {
	Connector     string          `json:"connector"`
	ConnectorType string          `json:"connector_type"`
	ItemID        string          `json:"item_id"`
	Version       string          `json:"version"`
	Change        string          `json:"change"`
	ObservedAt    string          `json:"observed_at"`
	Data          json.RawMessage `json:"data"`
	Generation    uint64          `json:"generation"`
	Sequence      uint64          `json:"sequence"`
}

// SignalID is the CloudEvents id and the Nats-Msg-Id of a signal: 32 hex
// digits of a SHA-256 over its connector, item id, version, change,
// sequence and generation, each part length-prefixed, so that no
// characters in an id or a version can make two signals' ids equal. One
// change of an item always gets the same id (a re-publish after a worker
// died before committing is dropped by JetStream), and every change gets
// its own: an item that returns to an earlier version has a later
// sequence, a deletion too, and after a reset (a new generation) every
// item starts a new sequence.
func SignalID(s *pollgridv1.Signal) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, part := range [...]string{s.GetConnector(), s.GetItemId(), s.GetVersion(), s.GetChange()} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))])
		h.Write([]byte(part))
	}
	h.Write(n[:binary.PutUvarint(n[:], s.GetSequence())])
	h.Write(n[:binary.PutUvarint(n[:], s.GetGeneration())])
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// SignalMsg builds the CloudEvents 1.0 binary-mode NATS message of a signal.
// The signal's data must be valid JSON: package poll checks every item's
// before it gets this far, so it is copied into the body as it is (no second
// pass over what is the bulk of a signal). The caller adds trace context to
// the returned headers.
func SignalMsg(s *pollgridv1.Signal) *nats.Msg {
	observed := s.GetObservedAt().AsTime().UTC().Format(time.RFC3339Nano)
	id := SignalID(s)
	return &nats.Msg{
		Subject: SignalSubject(s.GetConnectorType(), s.GetConnector()),
		Data:    appendSignalBody(make([]byte, 0, 160+len(id)+len(s.GetData())), s, observed),
		Header: nats.Header{
			"ce-specversion": {"1.0"},
			"ce-id":          {id},
			nats.MsgIdHdr:    {id},
			"ce-source":      {"/connectors/" + s.GetConnector()},
			"ce-type":        {"pollgrid." + s.GetConnectorType() + "." + s.GetChange()},
			"ce-subject":     {s.GetItemId()},
			"ce-time":        {observed},
			"content-type":   {"application/json"},
		},
	}
}

func appendSignalBody(b []byte, s *pollgridv1.Signal, observed string) []byte {
	for _, f := range [...]struct{ key, value string }{
		{`{"connector":`, s.GetConnector()},
		{`,"connector_type":`, s.GetConnectorType()},
		{`,"item_id":`, s.GetItemId()},
		{`,"version":`, s.GetVersion()},
		{`,"change":`, s.GetChange()},
		{`,"observed_at":`, observed},
	} {
		b = append(b, f.key...)
		b = appendJSONString(b, f.value)
	}
	b = append(b, `,"data":`...)
	if data := s.GetData(); len(data) > 0 {
		b = append(b, data...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"generation":`...)
	b = strconv.AppendUint(b, s.GetGeneration(), 10)
	b = append(b, `,"sequence":`...)
	b = strconv.AppendUint(b, s.GetSequence(), 10)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028
// and U+2029 escaped, as encoding/json writes them (without its HTML
// escaping, which a message body does not need).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// DecodeSignal parses a signal body (headers are not needed).
func DecodeSignal(body []byte) (*pollgridv1.Signal, error) {
	var b signalBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("decode signal: %w", err)
	}
	observed, err := time.Parse(time.RFC3339Nano, b.ObservedAt)
	if err != nil {
		return nil, fmt.Errorf("decode signal: observed_at: %w", err)
	}
	return &pollgridv1.Signal{
		Connector:     b.Connector,
		ConnectorType: b.ConnectorType,
		ItemId:        b.ItemID,
		Version:       b.Version,
		Change:        b.Change,
		ObservedAt:    timestamppb.New(observed),
		Data:          b.Data,
		Generation:    b.Generation,
		Sequence:      b.Sequence,
	}, nil
}
