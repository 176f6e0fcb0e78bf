package bus

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

func TestSignalBodyRoundTrips(t *testing.T) {
	s := &pollgridv1.Signal{
		Connector: "noaa-az", ConnectorType: "weather-noaa", ItemId: "urn:oid:2.49 \"quoted\" \\ back\nslash",
		Version: "2024-07-18T12:47:00-07:00", Change: ChangeUpdated,
		ObservedAt: timestamppb.New(time.Date(2026, 11, 26, 20, 41, 57, 300_000_000, time.UTC)),
		Data:       []byte(`{"event": "Excessive Heat Warning", "n": [1, 2.5e3]}`),
		Generation: 1, Sequence: 7,
	}
	msg := SignalMsg(s)
	require.True(t, json.Valid(msg.Data), "%s", msg.Data)
	got, err := DecodeSignal(msg.Data)
	require.NoError(t, err)
	assert.True(t, proto.Equal(s, got), "got %v", got)
	assert.Equal(t, "signals.weather-noaa.noaa-az", msg.Subject)
	assert.Equal(t, SignalID(s), msg.Header.Get("ce-id"))
	assert.Equal(t, SignalID(s), msg.Header.Get("Nats-Msg-Id"))
	assert.Equal(t, "2026-11-26T20:41:57.3Z", msg.Header.Get("ce-time"))

	s.Data = nil
	got, err = DecodeSignal(SignalMsg(s).Data)
	require.NoError(t, err)
	assert.Equal(t, "null", string(got.GetData()), "no data is JSON null")
}

// The body's field names are exactly the proto's, in snake_case: the JSON a
// consumer reads is the Signal message.
func TestSignalBodyHasTheProtoFields(t *testing.T) {
	var protoNames []string
	fields := (&pollgridv1.Signal{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		protoNames = append(protoNames, string(fields.Get(i).Name()))
	}
	var bodyNames []string
	for f := range reflect.TypeFor[signalBody]().Fields() {
		bodyNames = append(bodyNames, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	assert.Equal(t, protoNames, bodyNames)

	var written map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(SignalMsg(&pollgridv1.Signal{ObservedAt: timestamppb.Now()}).Data, &written))
	var keys []string
	for k := range written {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, protoNames, keys)
}

func TestAppendJSONStringReadsBackAsEncodingJSONWould(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"quotes" and \backslashes\`, "tab\tnewline\ncr\r", "\x00\x01\x1f\x7f", "é ü 日本 🌩",
		"line\u2028para\u2029", "bad \xff utf-8 \xc3", "<html>&amp;</html>",
	} {
		checkJSONString(t, s)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff\xfe", "\u2028", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(checkJSONString)
}

func checkJSONString(t *testing.T, s string) {
	out := appendJSONString(nil, s)
	var back string
	require.NoError(t, json.Unmarshal(out, &back), "%q gave %s", s, out)
	var viaStd string
	std, err := json.Marshal(s)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(std, &viaStd))
	assert.Equal(t, viaStd, back, "%q: as encoding/json writes it (%s), not %s", s, std, out)
}

// An id is one change: the same change always gets the same id (so
// JetStream drops a re-publish), and any other change gets another one,
// whatever characters the parts hold.
func TestSignalIDIsOneChange(t *testing.T) {
	base := &pollgridv1.Signal{Connector: "noaa-az", ConnectorType: "weather-noaa", ItemId: "a", Version: "b:c",
		Change: ChangeCreated, Sequence: 1, ObservedAt: timestamppb.Now()}
	with := func(change func(s *pollgridv1.Signal)) *pollgridv1.Signal {
		s := proto.Clone(base).(*pollgridv1.Signal)
		change(s)
		return s
	}
	again := with(func(s *pollgridv1.Signal) {
		s.ObservedAt = timestamppb.New(time.Now().Add(time.Minute))
		s.Data = []byte(`{}`)
	})
	assert.Equal(t, SignalID(base), SignalID(again), "a re-publish of the same change has the same id")
	assert.Regexp(t, `^[0-9a-f]{32}$`, SignalID(base))

	others := map[string]*pollgridv1.Signal{
		"item a:b at version c (the separator moved)":    with(func(s *pollgridv1.Signal) { s.ItemId, s.Version = "a:b", "c" }),
		"the same version, a later change (A -> B -> A)": with(func(s *pollgridv1.Signal) { s.Sequence = 3; s.Change = ChangeUpdated }),
		"deleted":                       with(func(s *pollgridv1.Signal) { s.Change = ChangeDeleted; s.Sequence = 2 }),
		"after a reset":                 with(func(s *pollgridv1.Signal) { s.Generation = 1 }),
		"another connector":             with(func(s *pollgridv1.Signal) { s.Connector = "noaa-ca" }),
		"an id with a newline":          with(func(s *pollgridv1.Signal) { s.ItemId = "x\ny" }),
		"an id with a space":            with(func(s *pollgridv1.Signal) { s.ItemId = "x y" }),
		"the version moved into the id": with(func(s *pollgridv1.Signal) { s.ItemId, s.Version = "ab:", "c" }),
	}
	ids := map[string]string{SignalID(base): "base"}
	for name, s := range others {
		id := SignalID(s)
		assert.NotContains(t, ids, id, "%s has the id of %s", name, ids[id])
		ids[id] = name
	}
}

func BenchmarkSignalID(b *testing.B) {
	s := &pollgridv1.Signal{Connector: "usgs-earthquakes-all-day", ConnectorType: "usgs-earthquakes", ItemId: "us7000abcd",
		Version: "1733500000000", Change: ChangeUpdated, Sequence: 3}
	b.ReportAllocs()
	for b.Loop() {
		_ = SignalID(s)
	}
}

// Every outcome a report can carry has its name; the names are the worker's
// metric labels and the admin API's words.
func TestOutcomeName(t *testing.T) {
	for value, enum := range pollgridv1.PollOutcome_name {
		o := pollgridv1.PollOutcome(value)
		if o == pollgridv1.PollOutcome_POLL_OUTCOME_UNSPECIFIED {
			assert.Equal(t, "unknown", OutcomeName(o))
			continue
		}
		assert.Equal(t, strings.ToLower(strings.TrimPrefix(enum, "POLL_OUTCOME_")), OutcomeName(o), enum)
	}
}
