package harness

import (
	"testing"

	"github.com/pollgrid/pollgrid/pkg/tlstest"
)

// CA is a certificate authority made for one test (pkg/tlstest): its
// certificate and what it issues are PEM files in a test temp dir.
type CA = tlstest.CA

// Pair is an issued certificate and its private key, as PEM files.
type Pair = tlstest.Pair

// NewCA creates a CA valid for the test.
func NewCA(t testing.TB) *CA { return tlstest.NewCA(t) }
