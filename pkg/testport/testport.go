// Package testport hands tests loopback TCP ports for the servers and
// services they start.
//
// Asking the kernel for a free port and closing it again leaves a window
// before the process meant to use it binds it; a second request in that
// window can get the same port back (a worker's HTTP_ADDR and a later
// nats-server's monitoring port, say). Free never hands out a port twice in
// one test process, which closes that window for everything a test starts.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// kernelTries is how many ports Free takes from the kernel before it looks
// for one itself: the kernel offers ports of one parity of its ephemeral
// range only (the other half is for outgoing connections), so a process
// that was handed most of those (a test run many times with -count) keeps
// being offered ports it already has.
const kernelTries = 100

// process is what this process has handed out: the promise is per process,
// so a test run again in the same process (-count) shares it.
var process = &allocator{handed: map[int]bool{}, offer: kernelPort, ports: ephemeralRange}

// Free returns a loopback port nobody listens on now and that this process
// has not handed out before. It fails only once every port of the
// ephemeral range was handed out or is in use.
func Free() (int, error) { return process.free() }

// allocator hands out ports, each once.
type allocator struct {
	mu     sync.Mutex
	handed map[int]bool
	// offer asks the kernel for a free port.
	offer func() (int, error)
	// ports is the range to look through when the kernel's offers are all
	// taken.
	ports func() (lo, hi int)
}

func (a *allocator) free() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for range kernelTries {
		port, err := a.offer()
		if err != nil {
			return 0, fmt.Errorf("find a free loopback port: %w", err)
		}
		if !a.handed[port] {
			a.handed[port] = true
			return port, nil
		}
	}
	lo, hi := a.ports()
	n := hi - lo + 1
	start := rand.IntN(n)
	for i := range n {
		port := lo + (start+i)%n
		if a.handed[port] || !listenable(port) {
			continue
		}
		a.handed[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("find a free loopback port: all %d ports from %d to %d were handed out by this process or are in use", n, lo, hi)
}

// kernelPort is a port the kernel picks as free.
func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// listenable reports whether nobody listens on port now.
func listenable(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// ephemeralRange is the kernel's range of ports it hands out itself
// (Linux's ip_local_port_range), or IANA's dynamic ports elsewhere.
func ephemeralRange() (lo, hi int) {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && 0 < lo && lo <= hi && hi <= 65535 {
				return lo, hi
			}
		}
	}
	return 49152, 65535
}
