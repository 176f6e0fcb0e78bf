//go:build !failpoints

package failpoint

// Hit does nothing: this binary was built without -tags failpoints.
func Hit(string) {}
