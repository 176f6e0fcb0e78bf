package builtin

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pollgrid/pollgrid/pkg/config"
)

// BenchmarkParse100k parses and validates a config of 100,000 http-json
// connectors written from one template, as a generated config is. At 19 MB
// it is over the default size cap (16 MiB), raised here as such a
// deployment would raise it.
func BenchmarkParse100k(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"connectors": [`)
	for i := range 100_000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"name": "c%d", "type": "http-json", "interval": "10s", "timeout": "5s",
			"config": {"url": "http://127.0.0.1:18080/items/%d", "items": ".items[]", "id": ".id", "version": ".version|tostring"}}`, i, i)
	}
	sb.WriteString(`]}`)
	data := []byte(sb.String())
	reg := Registry()
	env := config.MapEnv(map[string]string{"CONFIG_MAX_BYTES": "64MiB"})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := config.Parse(data, env, reg)
		if err != nil || len(cfg.Connectors) != 100_000 {
			b.Fatal(err)
		}
	}
}
