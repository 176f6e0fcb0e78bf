package history

import (
	"slices"
	"time"
)

// A connector's history is five strings (key suffixes keyHistory and
// ringKeys, recentKey), each of a bounded size whatever how often the
// connector polls, how many items it fetches or how long it runs, and each
// grown from small as the connector's history fills (see grow in
// record_lua.go): a connector a few minutes old takes about 1 KB, one a
// month old about 15 KB. recordLua reads and writes the head whole and the
// rest a slot or a report at a time, with GETRANGE and SETRANGE.
//
// The head (keyHistory), headBytes once its latency window is full:
//
//	[0]        layoutVersion
//	[1]        latency window length, in durations (0..LatencyWindow)
//	[2..3]     recent reports: where the next one is written (0..recentBytes-1)
//	[4..5]     recent reports: bytes written, up to recentBytes
//	[6..7]     recent reports: the bytes the reports key holds, up to recentBytes
//	[8..13]    each ring's key, two bytes: its shift + 1 (0: the key is not
//	           created yet) and the slots it holds (up to ringSlots)
//	[14..15]   reserved, 0
//	[16..117]  the open buckets: each ring's latest period, a slot each
//	[118..]    latency window: up to LatencyWindow durations of
//	           latencyBytes, newest first (the head is as long as they need)
//
// The rings (ringKeys: minutes, quarter-hours, days) are ringSlots[r] slots
// of slotBytes (see slot) each at most. Period p is in slot (p - shift) mod
// ringSlots[r], where shift is the first period the ring's key got, mod its
// slots: a ring fills from its first slot on, so a young connector's ring
// holds the slots it used and no more.
//
// The recent reports (recentKey) are a ring of recentBytes at most, the
// entries written one after the other (wrapping at its end), each followed
// by its length (2 bytes), so that they are read back from the write
// position, newest first, until the bytes written run out (an entry partly
// overwritten is not read). Until it first wraps, its entries start at 0.
//
// A ring's open bucket, the latest period it saw, lives in the head, so
// that the usual write (reports of the current minute, quarter-hour and
// day) adds to the head alone; a report of a later period moves the open
// bucket into its ring slot (which holds an earlier period: the open one is
// the latest) and opens the new one. Readers put the open bucket in its
// slot the same way.
const (
	layoutVersion = 2
	headerBytes   = 16
	openOffset    = headerBytes
	latencyOffset = openOffset + int(ringCount)*slotBytes
	headBytes     = latencyOffset + LatencyWindow*latencyBytes
	// ringHeaderOffset is where the rings' shifts and sizes are in the
	// header, two bytes a ring.
	ringHeaderOffset = 8
	// recentBytes is the recent reports' ring size: the last RecentKept
	// usual reports (about 50 bytes each) and room to spare; with Redis's
	// header and NUL, 6,144 bytes, one jemalloc size class.
	recentBytes = 6144 - 6
)

// A ring is one resolution's buckets: period p is the bucket of width
// starting at p*width since the epoch, UTC.
type ring int

const (
	ringMinutes ring = iota
	ringQuarters
	ringDays
	ringCount
)

// Ring sizes: an hour of minutes, a day of quarter-hours, 30 days of days,
// each with a few slots to spare so that reports a little ahead of a
// reader's clock do not push out what it reads.
const (
	minuteSlots  = 64
	quarterSlots = 100
	daySlots     = 32
)

var (
	ringWidths = [ringCount]time.Duration{time.Minute, 15 * time.Minute, 24 * time.Hour}
	ringSlots  = [ringCount]int64{minuteSlots, quarterSlots, daySlots}
	// ringKeys are the rings' key suffixes.
	ringKeys = [ringCount]string{"minutes", "quarters", "days"}
)

// recentKey is the recent reports' key suffix.
const recentKey = "reports"

// openSlotOffset is where ring r's open bucket is in the head.
func openSlotOffset(r ring) int64 { return openOffset + int64(r)*slotBytes }

// Layout 1 kept all of it in one string of 14,330 bytes, created whole at a
// connector's first report: the head as layout 2's with an 8-byte header
// (its bytes 6..7 reserved), then the three rings at their full size, slot
// p mod ringSlots holding period p (a shift of 0), then a recent reports'
// ring of v1RecentBytes. recordLua moves such a string over on the
// connector's next write.
const (
	v1HeaderBytes  = 8
	v1HeadBytes    = v1HeaderBytes + int(ringCount)*slotBytes + LatencyWindow*latencyBytes
	v1RecentOffset = v1HeadBytes + (minuteSlots+quarterSlots+daySlots)*slotBytes
	v1RecentBytes  = 7156
)

// A slot is a tag (4 bytes: the period it holds) and a bucket's eight sums,
// big-endian, each saturating at its width's largest value: successes,
// failures, skipped (3 bytes: 16.7 million a bucket), items fetched,
// published, failed (4 bytes: 4.29 billion), latency sum (5 bytes of
// microseconds: 12.7 days) and latency max (4 bytes: 71 minutes, the latency
// window's cap too). A zero tag is an empty slot.
const (
	tagBytes  = 4
	slotBytes = tagBytes + 30
)

// fieldBytes are the widths of a slot's sums, in order; recordLua has a copy.
var fieldBytes = [8]int{3, 3, 3, 4, 4, 4, 5, 4}

// period is the index of t's bucket in ring r; negative before 1970.
func period(r ring, t time.Time) int64 {
	w := ringWidths[r].Milliseconds()
	ms := t.UnixMilli()
	if ms < 0 {
		return -1 - (-ms-1)/w
	}
	return ms / w
}

// packSlot is period p's slot holding sums.
func packSlot(p int64, sums bucketSums) []byte {
	buf := make([]byte, slotBytes)
	putUint(buf[:tagBytes], uint64(p))
	off := tagBytes
	for i, v := range sums.fields() {
		putUint(buf[off:off+fieldBytes[i]], uint64(max(v, 0)))
		off += fieldBytes[i]
	}
	return buf
}

// putUint writes v big-endian into all of b, saturating at b's largest value.
func putUint(b []byte, v uint64) {
	if limit := uint64(1)<<(8*len(b)) - 1; len(b) < 8 && v > limit {
		v = limit
	}
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func getUint(b []byte) int64 {
	var v int64
	for _, c := range b {
		v = v<<8 | int64(c)
	}
	return v
}

// slotState says what a ring slot holds for the period asked about.
type slotState int

const (
	// slotEmpty: no report of the period was recorded (the slot holds an
	// older period, or none).
	slotEmpty slotState = iota
	// slotHeld: the slot holds the period's sums.
	slotHeld
	// slotLost: a later period took the slot, the period is past the ring.
	slotLost
)

// ringView is a ring as read: its slots, slot p mod ringSlots[r] holding
// period p (none when nothing was recorded), with the open bucket put in
// its slot.
type ringView struct {
	r     ring
	slots []byte
	// open is the ring's latest period, -1 when none.
	open int64
}

// newRingView builds the view of ring r from the head (at least its header
// and open buckets) and the ring's key as GET returns it.
func newRingView(r ring, head, key []byte) ringView {
	v := ringView{r: r, open: -1}
	if len(head) < latencyOffset || head[0] != layoutVersion {
		return v
	}
	n := ringSlots[r]
	v.slots = make([]byte, n*slotBytes)
	// The key's slot i holds period shift+i (mod n).
	if shift := int64(head[ringHeaderOffset+2*int(r)]) - 1; shift >= 0 {
		for i := int64(0); i < n && (i+1)*slotBytes <= int64(len(key)); i++ {
			at := (shift + i) % n * slotBytes
			copy(v.slots[at:at+slotBytes], key[i*slotBytes:])
		}
	}
	open := head[openSlotOffset(r) : openSlotOffset(r)+slotBytes]
	if anyNonZero(open) {
		p := getUint(open[:tagBytes])
		v.open = p
		off := (p % n) * slotBytes
		copy(v.slots[off:off+slotBytes], open)
	}
	return v
}

func anyNonZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return true
		}
	}
	return false
}

// read reads period p.
func (v ringView) read(p int64) (Rollup, slotState) {
	if v.slots == nil || p < 0 {
		return Rollup{}, slotEmpty
	}
	if p <= v.open-ringSlots[v.r] {
		return Rollup{}, slotLost
	}
	off := (p % ringSlots[v.r]) * slotBytes
	slot := v.slots[off : off+slotBytes]
	switch tag := getUint(slot[:tagBytes]); {
	case tag > p:
		return Rollup{}, slotLost
	case tag < p:
		return Rollup{}, slotEmpty
	}
	var n [8]int64
	o := tagBytes
	for i, w := range fieldBytes {
		n[i] = getUint(slot[o : o+w])
		o += w
	}
	if n == [8]int64{} {
		return Rollup{}, slotEmpty
	}
	return Rollup{
		Polls: n[0] + n[1] + n[2], Successes: n[0], Failures: n[1], Skipped: n[2],
		ItemsFetched: n[3], ItemsPublished: n[4], ItemsFailed: n[5],
		LatencySum: time.Duration(n[6]) * time.Microsecond, LatencyMax: time.Duration(n[7]) * time.Microsecond,
	}, slotHeld
}

// periods are the periods in [first, last] the view may hold, in order:
// its slots' tags.
func (v ringView) periods(first, last int64) []int64 {
	var out []int64
	for i := int64(0); i+slotBytes <= int64(len(v.slots)); i += slotBytes {
		if tag := getUint(v.slots[i : i+tagBytes]); tag >= first && tag <= last {
			out = append(out, tag)
		}
	}
	slices.Sort(out)
	return out
}
