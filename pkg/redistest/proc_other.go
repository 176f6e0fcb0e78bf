//go:build !linux

package redistest

import "os/exec"

// dieWithParent has no portable equivalent outside Linux: there a test binary
// that dies without cleanups leaves its redis-server running.
func dieWithParent(*exec.Cmd) {}
