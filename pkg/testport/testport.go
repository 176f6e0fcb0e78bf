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
	"net"
	"sync"
)

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Free returns a loopback port nobody listens on now and that this process
// has not handed out before.
func Free() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free loopback port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handed[port] {
			handed[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("find a free loopback port: the kernel kept offering ports already handed out")
}
