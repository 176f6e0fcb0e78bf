package httpjson

import (
	"runtime"
	"sync"
	"weak"
)

// shared holds what many connectors build alike, by a key that says what it
// is: compiled jq, header sets. Thousands of connectors written from one
// template then hold one copy, which keeps a worker's memory and start-up
// from growing with them. It holds values weakly, so what no connector uses
// any more (after a reload) is collected. Values are never changed once
// built.
type shared[V any] struct {
	mu sync.Mutex
	m  map[string]weak.Pointer[V]
}

func (s *shared[V]) get(key string, build func() (*V, error)) (*V, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if wp, ok := s.m[key]; ok {
		if v := wp.Value(); v != nil {
			return v, nil
		}
	}
	v, err := build()
	if err != nil {
		return nil, err
	}
	if s.m == nil {
		s.m = map[string]weak.Pointer[V]{}
	}
	wp := weak.Make(v)
	s.m[key] = wp
	runtime.AddCleanup(v, func(key string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.m[key] == wp {
			delete(s.m, key)
		}
	}, key)
	return v, nil
}

// len reports how many values are held (tests).
func (s *shared[V]) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
