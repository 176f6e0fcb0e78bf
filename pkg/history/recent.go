package history

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pollgrid/pollgrid/pkg/store"
	pollgridv1 "github.com/pollgrid/pollgrid/proto/pollgrid/v1"
)

// The recent reports, as their ring keeps them (layout.go).

// Recent reads a connector's latest reports (at most RecentKept), oldest
// first by started_at; at most limit of the newest when limit > 0. They are
// the reports as kept (see appendEntry): no traceparent or tracestate, an
// error or worker past its cap shortened, and the connector's current type.
func (s *Store) Recent(ctx context.Context, name string, limit int) ([]*pollgridv1.PollReport, error) {
	if err := store.CheckName(name); err != nil {
		return nil, fmt.Errorf("read recent reports: %w", err)
	}
	var header, ring, connectorType *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		header = p.GetRange(ctx, s.key(name, keyHistory), 0, headerBytes-1)
		ring = p.Get(ctx, s.key(name, recentKey))
		connectorType = p.HGet(ctx, s.key(name, keyMetrics), metricType)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read recent reports %s: %w", name, err)
	}
	out, err := recentEntries([]byte(header.Val()), []byte(ring.Val()), RecentKept, name, connectorType.Val())
	if err != nil {
		return nil, fmt.Errorf("read recent reports %s: %w", name, err)
	}
	// Newest first as stored, as they arrived; reports of one batch or of
	// several workers may arrive out of order.
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b *pollgridv1.PollReport) int {
		return a.GetStartedAt().AsTime().Compare(b.GetStartedAt().AsTime())
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// Caps on a report's text as kept: a recent report's error and worker, and
// the metrics' last_error. A longer text keeps its start and its end (the
// cause, in "label: label: cause" errors) around an ellipsis.
const (
	recentErrorBytes  = 256
	recentWorkerBytes = 128
	lastErrorBytes    = 512
)

// shorten cuts s to at most n bytes, on rune boundaries: its first quarter
// and its end around "…".
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	head := (n - len(ellipsis)) / 4
	tail := n - len(ellipsis) - head
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	start := len(s) - tail
	for start < len(s) && !utf8.RuneStart(s[start]) {
		start++
	}
	return s[:head] + ellipsis + s[start:]
}

// Entry flags, the first byte of a recent report's entry after its outcome
// (bits 0-1).
const (
	entryNotModified = 1 << 2
	entryRateLimited = 1 << 3
	// entryTraceBinary: the trace id is 32 lowercase hex digits, kept as
	// its 16 bytes.
	entryTraceBinary = 1 << 4
)

// appendEntry appends a recent report as kept: flags and outcome,
// started_at (seconds and nanoseconds), duration (ns), items fetched,
// published and failed, fencing token (varints), worker, trace id and error
// (each a uvarint length and its bytes, the trace id 16 bytes when it is
// hex), then the entry's length (2 bytes). The connector's name and type are
// not repeated (Recent fills them in); traceparent and tracestate are not
// kept (they link spans when the report is consumed).
func appendEntry(dst []byte, r *pollgridv1.PollReport) []byte {
	start := len(dst)
	flags := byte(r.GetOutcome()) & 3
	if r.GetNotModified() {
		flags |= entryNotModified
	}
	if r.GetRateLimited() {
		flags |= entryRateLimited
	}
	trace := r.GetTraceId()
	traceBin, err := hex.DecodeString(trace)
	if err == nil && len(traceBin) == 16 && hex.EncodeToString(traceBin) == trace {
		flags |= entryTraceBinary
	}
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, r.GetStartedAt().GetSeconds())
	dst = binary.AppendUvarint(dst, uint64(max(r.GetStartedAt().GetNanos(), 0)))
	dst = binary.AppendVarint(dst, int64(r.GetDuration().AsDuration()))
	dst = binary.AppendVarint(dst, r.GetItemsFetched())
	dst = binary.AppendVarint(dst, r.GetItemsPublished())
	dst = binary.AppendVarint(dst, r.GetItemsFailed())
	dst = binary.AppendUvarint(dst, r.GetFencingToken())
	dst = appendText(dst, shorten(r.GetWorker(), recentWorkerBytes))
	if flags&entryTraceBinary != 0 {
		dst = append(dst, traceBin...)
	} else {
		dst = appendText(dst, shorten(trace, recentWorkerBytes))
	}
	dst = appendText(dst, shorten(r.GetError(), recentErrorBytes))
	return binary.BigEndian.AppendUint16(dst, uint16(len(dst)-start))
}

// newestFitting is where the newest of appended entries (oldest first)
// that fit in n bytes start, found from their length suffixes.
func newestFitting(entries []byte, n int) int {
	start := len(entries)
	for start > 0 {
		size := int(binary.BigEndian.Uint16(entries[start-2:])) + 2
		if len(entries)-(start-size) > n {
			break
		}
		start -= size
	}
	return start
}

func appendText(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

var errEntry = errors.New("truncated entry")

// recentEntries reads the recent reports' ring (header: the head's first
// headerBytes; ring: the reports key), newest first, at most limit.
func recentEntries(header, ring []byte, limit int, name, connectorType string) ([]*pollgridv1.PollReport, error) {
	if len(header) < headerBytes || header[0] != layoutVersion || len(ring) > recentBytes {
		return nil, nil
	}
	// A ring that has not wrapped yet is shorter: its entries start at 0.
	ring = append(ring, make([]byte, recentBytes-len(ring))...)
	pos := int(binary.BigEndian.Uint16(header[2:]))
	left := int(binary.BigEndian.Uint16(header[4:]))
	if pos >= recentBytes || left > recentBytes {
		return nil, fmt.Errorf("recent reports: %w", errEntry)
	}
	// at is the ring's bytes [from, from+n), wrapping.
	at := func(from, n int) []byte {
		from = ((from % recentBytes) + recentBytes) % recentBytes
		if from+n <= recentBytes {
			return ring[from : from+n]
		}
		return append(slices.Clip(ring[from:]), ring[:n-(recentBytes-from)]...)
	}
	var out []*pollgridv1.PollReport
	for len(out) < limit && left >= 2 {
		n := int(binary.BigEndian.Uint16(at(pos-2, 2)))
		if n+2 > left {
			break
		}
		r, err := parseEntry(at(pos-2-n, n))
		if err != nil {
			return nil, fmt.Errorf("recent report %d: %w", len(out), err)
		}
		r.Connector, r.ConnectorType = name, connectorType
		out = append(out, r)
		pos -= n + 2
		left -= n + 2
	}
	return out, nil
}

func parseEntry(b []byte) (*pollgridv1.PollReport, error) {
	p := entryReader{b: b}
	flags := p.byte()
	r := &pollgridv1.PollReport{
		Outcome:     pollgridv1.PollOutcome(flags & 3),
		NotModified: flags&entryNotModified != 0,
		RateLimited: flags&entryRateLimited != 0,
	}
	secs := p.varint()
	r.StartedAt = &timestamppb.Timestamp{Seconds: secs, Nanos: int32(p.uvarint())}
	r.Duration = durationpb.New(time.Duration(p.varint()))
	r.ItemsFetched, r.ItemsPublished, r.ItemsFailed = p.varint(), p.varint(), p.varint()
	r.FencingToken = p.uvarint()
	r.Worker = p.text()
	if flags&entryTraceBinary != 0 {
		r.TraceId = hex.EncodeToString(p.bytes(16))
	} else {
		r.TraceId = p.text()
	}
	r.Error = p.text()
	if p.err != nil {
		return nil, p.err
	}
	return r, nil
}

// entryReader reads an entry's fields; the first error sticks.
type entryReader struct {
	b   []byte
	err error
}

func (p *entryReader) byte() byte {
	if b := p.bytes(1); len(b) == 1 {
		return b[0]
	}
	return 0
}

func (p *entryReader) bytes(n int) []byte {
	if p.err != nil || n < 0 || len(p.b) < n {
		p.err = errEntry
		return nil
	}
	out := p.b[:n]
	p.b = p.b[n:]
	return out
}

func (p *entryReader) varint() int64 {
	v, n := binary.Varint(p.b)
	if p.err == nil && n <= 0 {
		p.err = errEntry
	}
	if n > 0 {
		p.b = p.b[n:]
	}
	return v
}

func (p *entryReader) uvarint() uint64 {
	v, n := binary.Uvarint(p.b)
	if p.err == nil && n <= 0 {
		p.err = errEntry
	}
	if n > 0 {
		p.b = p.b[n:]
	}
	return v
}

func (p *entryReader) text() string {
	n := p.uvarint()
	if n > uint64(len(p.b)) {
		p.err = errEntry
		return ""
	}
	return string(p.bytes(int(n)))
}
