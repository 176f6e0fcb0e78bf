package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SeenEntry is what a connector remembers of one item between polls. It is
// stored as one hash field, "<seq>:<day>:<version>" (about 90 bytes per
// item in Redis at 100,000 items: docs/benchmarks.md).
type SeenEntry struct {
	// Version is the item's version when a poll last published a change of
	// it; "" for an item never seen, and for one published as deleted (a
	// tombstone: Seq > 0).
	Version string
	// Seq counts the changes published for the item (created, updated,
	// deleted), the last one's sequence: 0 only for an item never seen.
	Seq uint64
	// Day is the UTC day (see Day) a poll last returned the item. An entry
	// is rewritten at most once a day to move it, so that an unchanged
	// listing writes nothing; after SeenTTL without a poll returning it,
	// the entry is forgotten.
	Day int64
}

// Known reports whether the item is remembered with a version (neither
// never seen nor deleted).
func (e SeenEntry) Known() bool { return e.Version != "" }

// Day numbers the UTC day of t: days since 1970-01-01.
func Day(t time.Time) int64 { return t.Unix() / 86400 }

func (e SeenEntry) encode() string {
	return strconv.FormatUint(e.Seq, 10) + ":" + strconv.FormatInt(e.Day, 10) + ":" + e.Version
}

// parseSeenEntry reads "<seq>:<day>:<version>". A value in the form that
// versions before sequences wrote, the bare version, reads as that version
// with sequence 1 and day 0 (rewritten by the next poll that returns it).
func parseSeenEntry(v string) SeenEntry {
	if v == "" {
		return SeenEntry{}
	}
	seqText, rest, ok := strings.Cut(v, ":")
	if ok {
		dayText, version, ok := strings.Cut(rest, ":")
		seq, err1 := strconv.ParseUint(seqText, 10, 64)
		day, err2 := strconv.ParseInt(dayText, 10, 64)
		if ok && err1 == nil && err2 == nil {
			return SeenEntry{Seq: seq, Day: day, Version: version}
		}
	}
	return SeenEntry{Seq: 1, Version: v}
}

// parseSeen turns a flat HGETALL reply of the seen hash into entries.
func parseSeen(flat []any) map[string]SeenEntry {
	m := make(map[string]SeenEntry, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		m[k] = parseSeenEntry(v)
	}
	return m
}

// SeenEntries returns what is remembered of each id, aligned with ids, the
// zero entry for an id never seen (or forgotten).
func (s *Store) SeenEntries(ctx context.Context, connector string, ids []string) ([]SeenEntry, error) {
	if err := CheckName(connector); err != nil {
		return nil, fmt.Errorf("read seen items: %w", err)
	}
	out := make([]SeenEntry, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.key(connector, keySeen), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("read seen items %s: %w", connector, err)
	}
	for i, v := range vals {
		text, _ := v.(string)
		out[i] = parseSeenEntry(text)
	}
	return out, nil
}

// Seen returns every remembered item, by id: what a poll that read the
// whole listing compares it with to find the items gone, and what one at
// the connector's seen_cap chooses the items to forget from.
func (s *Store) Seen(ctx context.Context, connector string) (map[string]SeenEntry, error) {
	if err := CheckName(connector); err != nil {
		return nil, fmt.Errorf("read seen items: %w", err)
	}
	h, err := s.rdb.HGetAll(ctx, s.key(connector, keySeen)).Result()
	if err != nil {
		return nil, fmt.Errorf("read seen items %s: %w", connector, err)
	}
	m := make(map[string]SeenEntry, len(h))
	for id, v := range h {
		m[id] = parseSeenEntry(v)
	}
	return m, nil
}

// SeenData returns the data kept for ids (a connector that publishes
// deletions), aligned with ids, nil where none is kept.
func (s *Store) SeenData(ctx context.Context, connector string, ids []string) ([][]byte, error) {
	if err := CheckName(connector); err != nil {
		return nil, fmt.Errorf("read seen data: %w", err)
	}
	out := make([][]byte, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.key(connector, keySeenData), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("read seen data %s: %w", connector, err)
	}
	for i, v := range vals {
		if str, ok := v.(string); ok {
			out[i] = []byte(str)
		}
	}
	return out, nil
}

// SeenItem is one item a commit remembers.
type SeenItem struct {
	ID    string
	Entry SeenEntry
	// Data is kept (seen_data) for a connector that publishes deletions, so
	// that its deleted signal can carry the item's last known data; nil
	// leaves what is kept as it is.
	Data []byte
}

// SeenCount is how many item versions a connector remembers.
func (s *Store) SeenCount(ctx context.Context, name string) (int64, error) {
	if err := CheckName(name); err != nil {
		return 0, fmt.Errorf("count seen items: %w", err)
	}
	n, err := s.rdb.HLen(ctx, s.key(name, keySeen)).Result()
	if err != nil {
		return 0, fmt.Errorf("count seen items %s: %w", name, err)
	}
	return n, nil
}
