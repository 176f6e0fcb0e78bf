package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSpliceKeepsTheHandWrittenText(t *testing.T) {
	doc := "# Benchmarks\n\nHand-written intro.\n"
	out, err := Splice(doc, []string{"e2e", "scheduler"}, map[string]string{"scheduler": "sched v1"})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, doc), "the text before is kept")
	assert.Contains(t, out, BlockBegin)
	assert.Contains(t, out, "<!-- bench:scheduler:begin -->\nsched v1\n<!-- bench:scheduler:end -->")
	assert.NotContains(t, out, "bench:e2e:begin", "no empty section for a scenario not run")

	// Add a section before it and a footer after the block.
	out += "\nHand-written footer.\n"
	out, err = Splice(out, []string{"e2e", "scheduler"}, map[string]string{"e2e": "e2e v1\n\n| a |\n"})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, doc))
	assert.True(t, strings.HasSuffix(out, "\nHand-written footer.\n"), "the text after is kept")
	assert.Less(t, strings.Index(out, "e2e v1"), strings.Index(out, "sched v1"), "sections in the given order")

	// A rerun of one scenario replaces only its own section.
	again, err := Splice(out, []string{"e2e", "scheduler"}, map[string]string{"scheduler": "sched v2"})
	require.NoError(t, err)
	assert.Contains(t, again, "e2e v1\n\n| a |")
	assert.Contains(t, again, "sched v2")
	assert.NotContains(t, again, "sched v1")
	assert.Equal(t, 1, strings.Count(again, BlockBegin))

	// Splicing is stable: the same sections give the same document.
	same, err := Splice(again, []string{"e2e", "scheduler"}, nil)
	require.NoError(t, err)
	assert.Equal(t, again, same)

	// A section of an id no longer in the order is kept at the end.
	kept, err := Splice(again, []string{"scheduler"}, nil)
	require.NoError(t, err)
	assert.Contains(t, kept, "e2e v1")
}

func TestSpliceRefusesBrokenMarkers(t *testing.T) {
	_, err := Splice("x\n"+BlockBegin+"\nno end", []string{"a"}, nil)
	assert.ErrorContains(t, err, "fix the markers")
	_, err = Splice(BlockBegin+"\n<!-- bench:a:begin -->\nx\n"+BlockEnd, []string{"a"}, nil)
	assert.ErrorContains(t, err, "bench:a:end")
}

func TestSpliceFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	require.NoError(t, SpliceFile(path, []string{"a"}, map[string]string{"a": "first"}))
	require.NoError(t, SpliceFile(path, []string{"a"}, map[string]string{"a": "second"}))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(b), "second")
	assert.NotContains(t, string(b), "first")
}

func TestTableAndNumbers(t *testing.T) {
	var tb Table
	tb.Header = []string{"measure", "value"}
	tb.Add("a|b", "1")
	assert.Equal(t, "| measure | value |\n| --- | --- |\n| a\\|b | 1 |\n", tb.Markdown())

	assert.Equal(t, "1,029", Num(1029.4, 0))
	assert.Equal(t, "1,234,567.89", Num(1234567.891, 2))
	assert.Equal(t, "−1,593", Num(-1593, 0))
	assert.Equal(t, "0", Num(-0.2, 0), "no minus on a value that rounds to zero")
	assert.Equal(t, "—", Num(math.NaN(), 1))
	assert.Equal(t, "+1,593", Signed(1593, 0))
	assert.Equal(t, "−12", Signed(-12, 0))
	assert.Equal(t, "382 MiB", MiB(382*(1<<20)))

	f := func(x float64) string { return Num(x, 0) }
	assert.Equal(t, "1,029 (742–1,270)", Range(Summary{Median: 1029, Min: 742, Max: 1270, N: 3}, f))
	assert.Equal(t, "5", Range(Summary{Median: 5, Min: 5, Max: 5, N: 1}, f))
	assert.Equal(t, "—", Range(Summary{}, f))

	assert.Equal(t, "60s", Dur(time.Minute))
	assert.Equal(t, "1.5s", Dur(1500*time.Millisecond))
	assert.Equal(t, "1 run", Plural(1, "run"))
	assert.Equal(t, "3 runs", Plural(3, "run"))

	assert.Equal(t, "met", Verdict(true, 1))
	assert.Equal(t, "NOT MET", Verdict(false, 1))
	assert.Equal(t, "—", Verdict(false, math.NaN()))
}
