package admin

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestShortErrorKeepsTheCause(t *testing.T) {
	const guard = `poll guarded: nws alerts: Get http://10.255.255.1:9911/alerts/active?area=AZ: outbound guard refused to connect to 10.255.255.1:9911: a private address (to allow it, add "10.255.255.1" or a CIDR holding it to the connector's config.allow_hosts)`
	tests := []struct {
		name string
		msg  string
		max  int
		want string
	}{
		{name: "short enough: unchanged, on one line", msg: "poll a: upstream answered 503\n  Service Unavailable", max: 70,
			want: "poll a: upstream answered 503 Service Unavailable"},
		{name: "labels dropped, as few as the width asks", max: 70,
			msg:  "poll quakes: usgs all_hour: Get https://earthquake.usgs.gov/feed: dial tcp 10.0.0.1:443: connect: connection refused",
			want: "…dial tcp 10.0.0.1:443: connect: connection refused"},
		{name: "one label dropped", max: 70,
			msg:  "poll quakes: usgs all_hour: read response body: unexpected EOF while reading chunk",
			want: "…usgs all_hour: read response body: unexpected EOF while reading chunk"},
		{name: "the cause cut at its end, never its start", msg: guard, max: 70,
			want: "…outbound guard refused to connect to 10.255.255.1:9911: a private ad…"},
		{name: "the upstream's status kept with its message", max: 70,
			msg:  "poll long: nws alerts: upstream answered 503 Service Unavailable: the upstream is down for maintenance; the cause is at the end: database connection pool exhausted",
			want: "…upstream answered 503 Service Unavailable: the upstream is down for…"},
		{name: "the last two parts stay together", max: 60,
			msg:  "poll q: usgs all_hour: read response body: response body too large: more than 8388608 bytes (raise the connector's max body size)",
			want: "…response body too large: more than 8388608 bytes (raise th…"},
		{name: "no separator: the end is cut", msg: "a very long error without any label in front of it at all, none", max: 30,
			want: "a very long error without any…"},
		{name: "separators in quotes and parentheses do not split", max: 60,
			msg:  `poll x: config: "a: b: c" is not a duration (write "5s": a number and a unit) and more words here`,
			want: `…config: "a: b: c" is not a duration (write "5s": a number…`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ShortError(tt.msg, tt.max)
			assert.Equal(t, tt.want, got)
			assert.LessOrEqual(t, utf8.RuneCountInString(got), tt.max)
		})
	}
}
