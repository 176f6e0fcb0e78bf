package bus

import (
	"strings"

	"github.com/nats-io/nats.go"
)

// HeaderCarrier adapts nats.Header to OpenTelemetry's TextMapCarrier. Keys
// are lowercase on the wire ("traceparent", "tracestate"), as W3C and
// CloudEvents expect.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if v := c[strings.ToLower(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces key's values.
func (c HeaderCarrier) Set(key, value string) { c[strings.ToLower(key)] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
