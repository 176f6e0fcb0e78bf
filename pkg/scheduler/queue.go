package scheduler

import (
	"container/heap"
	"time"

	"github.com/pollgrid/pollgrid/pkg/config"
)

// entry is one scheduled connector.
type entry struct {
	c     config.Connector
	due   time.Time
	index int
}

// queue orders connectors by due time: the next poll is always at the top,
// so each tick costs O(log n) for any number of connectors.
type queue struct {
	items  entryHeap
	byName map[string]*entry
}

func newQueue() *queue { return &queue{byName: map[string]*entry{}} }

func (q *queue) Len() int { return len(q.items) }

// Set adds or reschedules a connector.
func (q *queue) Set(c config.Connector, due time.Time) {
	if e, ok := q.byName[c.Name]; ok {
		e.c, e.due = c, due
		heap.Fix(&q.items, e.index)
		return
	}
	e := &entry{c: c, due: due}
	q.byName[c.Name] = e
	heap.Push(&q.items, e)
}

// Get returns a scheduled connector's entry.
func (q *queue) Get(name string) (*entry, bool) {
	e, ok := q.byName[name]
	return e, ok
}

// Remove unschedules a connector.
func (q *queue) Remove(name string) {
	if e, ok := q.byName[name]; ok {
		heap.Remove(&q.items, e.index)
		delete(q.byName, name)
	}
}

// Peek returns the earliest entry, nil when empty.
func (q *queue) Peek() *entry {
	if len(q.items) == 0 {
		return nil
	}
	return q.items[0]
}

// Clear unschedules everything.
func (q *queue) Clear() {
	q.items = nil
	q.byName = map[string]*entry{}
}

type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
