//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"slices"
	"syscall"
)

var armed = os.Getenv("POLLGRID_FAILPOINT")

func init() {
	if armed != "" && !slices.Contains(Points, armed) {
		fmt.Fprintf(os.Stderr, "POLLGRID_FAILPOINT=%q: not a failpoint (want one of %v)\n", armed, Points)
		os.Exit(2)
	}
}

// Hit kills this process with SIGKILL when point is the armed one.
func Hit(point string) {
	if point != armed {
		return
	}
	fmt.Fprintf(os.Stderr, "failpoint %s: killing this process\n", point)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not handled; nothing runs after it
}
