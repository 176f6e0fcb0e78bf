package bus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

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

// signalBody mirrors pollgridv1.Signal with data inlined as raw JSON, which
// protojson cannot do for a bytes field. A test keeps the two in step.
type signalBody struct {
	Connector     string          `json:"connector"`
	ConnectorType string          `json:"connector_type"`
	ItemID        string          `json:"item_id"`
	Version       string          `json:"version"`
	Change        string          `json:"change"`
	ObservedAt    string          `json:"observed_at"`
	Data          json.RawMessage `json:"data"`
}

// SignalID is the CloudEvents id and the Nats-Msg-Id of a signal: the same
// (item, version) always gets the same id, so JetStream drops a re-publish.
func SignalID(s *pollgridv1.Signal) string {
	return s.GetConnector() + ":" + s.GetItemId() + ":" + s.GetVersion()
}

// SignalMsg builds the CloudEvents 1.0 binary-mode NATS message of a signal.
// The caller adds trace context to the returned headers.
func SignalMsg(s *pollgridv1.Signal) (*nats.Msg, error) {
	data := s.GetData()
	if len(data) == 0 {
		data = []byte("null")
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("signal %s: data is not valid JSON", SignalID(s))
	}
	observed := s.GetObservedAt().AsTime().UTC().Format(time.RFC3339Nano)
	body, err := json.Marshal(signalBody{
		Connector:     s.GetConnector(),
		ConnectorType: s.GetConnectorType(),
		ItemID:        s.GetItemId(),
		Version:       s.GetVersion(),
		Change:        s.GetChange(),
		ObservedAt:    observed,
		Data:          data,
	})
	if err != nil {
		return nil, fmt.Errorf("encode signal %s: %w", SignalID(s), err)
	}
	id := SignalID(s)
	msg := &nats.Msg{
		Subject: SignalSubject(s.GetConnectorType(), s.GetConnector()),
		Data:    body,
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
	return msg, nil
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
	}, nil
}
