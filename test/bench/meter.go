package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// Proc names one OS process under measurement.
type Proc struct {
	// Name is how the results call it: "worker-1", "nats-server", ...
	Name string
	PID  int
	// Apart marks a process reported on its own and left out of the sums
	// (the upstream stands in for the internet, not for pollgrid).
	Apart bool
}

// Usage is what one process used over a measurement window.
type Usage struct {
	Proc
	// CPU is user+system time over the window.
	CPU time.Duration
	// MaxRSS is the largest RSS sampled (once a second and at both ends).
	MaxRSS int64
	// Err is set when the process could not be read at the end (it exited).
	Err error
}

// Window is the result of one measurement window.
type Window struct {
	Wall  time.Duration
	Procs []Usage
	// Machine is the busy CPU time of the whole machine over the window
	// (/proc/stat), Self that of the process measuring (the test).
	Machine, Self time.Duration
}

// Others is the CPU that processes outside the measurement used over the
// window, in cores: another engineer's build on a shared machine shows
// here. Zero when it cannot tell.
func (w Window) Others() float64 {
	if w.Wall <= 0 || w.Machine <= 0 {
		return 0
	}
	d := w.Machine - w.Self
	for _, u := range w.Procs {
		d -= u.CPU
	}
	return max(0, d.Seconds()/w.Wall.Seconds())
}

// Cores is the average number of CPUs a process kept busy.
func (w Window) Cores(u Usage) float64 {
	if w.Wall <= 0 {
		return 0
	}
	return u.CPU.Seconds() / w.Wall.Seconds()
}

// Sum is the CPU of every process not marked Apart.
func (w Window) Sum() time.Duration {
	var d time.Duration
	for _, u := range w.Procs {
		if !u.Apart {
			d += u.CPU
		}
	}
	return d
}

// Get returns the usage of the process called name.
func (w Window) Get(name string) (Usage, bool) {
	for _, u := range w.Procs {
		if u.Name == name {
			return u, true
		}
	}
	return Usage{}, false
}

// Meter measures CPU and RSS of processes over one window: Start reads
// every process's CPU, a sampler reads RSS every second, Stop reads CPU again.
type Meter struct {
	procs  []Proc
	start  []int64
	began  time.Time
	sys0   SystemCPU
	self0  int64
	mu     sync.Mutex
	maxRSS []int64
	cancel context.CancelFunc
	done   chan struct{}
}

// StartMeter starts a window over procs. A process that cannot be read now
// is an error: it should be running.
func StartMeter(procs []Proc) (*Meter, error) {
	m := &Meter{procs: procs, start: make([]int64, len(procs)), maxRSS: make([]int64, len(procs)), done: make(chan struct{})}
	for i, p := range procs {
		t, err := ProcCPU(p.PID)
		if err != nil {
			return nil, fmt.Errorf("meter %s (pid %d): %w", p.Name, p.PID, err)
		}
		m.start[i] = t
	}
	m.sys0, _ = ReadSystemCPU()
	m.self0, _ = ProcCPU(os.Getpid())
	m.began = time.Now()
	m.sampleRSS()
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				m.sampleRSS()
			}
		}
	}()
	return m, nil
}

func (m *Meter) sampleRSS() {
	for i, p := range m.procs {
		rss, err := ProcRSS(p.PID)
		if err != nil {
			continue // exited (a killed worker): keep what was seen
		}
		m.mu.Lock()
		m.maxRSS[i] = max(m.maxRSS[i], rss)
		m.mu.Unlock()
	}
}

// Stop ends the window and returns what each process used.
func (m *Meter) Stop() Window {
	m.sampleRSS()
	end := make([]int64, len(m.procs))
	errs := make([]error, len(m.procs))
	for i, p := range m.procs {
		end[i], errs[i] = ProcCPU(p.PID)
	}
	sys1, sysErr := ReadSystemCPU()
	self1, _ := ProcCPU(os.Getpid())
	wall := time.Since(m.began)
	m.cancel()
	<-m.done
	tick := time.Second / time.Duration(ClockTick())
	w := Window{Wall: wall, Self: time.Duration(self1-m.self0) * tick}
	if sysErr == nil && m.sys0.Total > 0 {
		w.Machine = time.Duration(sys1.Busy-m.sys0.Busy) * tick
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, p := range m.procs {
		u := Usage{Proc: p, MaxRSS: m.maxRSS[i], Err: errs[i]}
		if errs[i] == nil {
			u.CPU = time.Duration(end[i]-m.start[i]) * tick
		}
		w.Procs = append(w.Procs, u)
	}
	return w
}
