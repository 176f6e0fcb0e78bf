package cli

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/pollgrid/pollgrid/pkg/admin"
	"github.com/pollgrid/pollgrid/pkg/store"
)

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// ago says how long before now t was, in the largest whole unit.
func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return span(time.Since(*t)) + " ago"
}

func span(d time.Duration) string {
	if d < 0 {
		return "in " + admin.ShortDuration(-d)
	}
	return admin.ShortDuration(d)
}

func until(t *time.Time) string {
	if t == nil {
		return "-"
	}
	if d := time.Until(*t); d > 0 {
		return "in " + span(d)
	}
	return "now"
}

func clock(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

func secs(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.2fs", v)
	}
	return fmt.Sprintf("%dms", int(v*1000))
}

// cut folds s onto one line and cuts its end at n runes: for upstream data,
// not errors (admin.ShortError keeps an error's cause).
func cut(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// listErrorWidth is how many characters of a last error a list row shows.
const listErrorWidth = 70

func printList(w io.Writer, r admin.ListReply, filtered bool) {
	t := table(w)
	fmt.Fprintln(t, "HEALTH\tNAME\tTYPE\tINTERVAL\tLAST SUCCESS\tNEXT\tSUCCESS\tP95\tLAST ERROR")
	shown := map[string]int{}
	for _, c := range r.Connectors {
		shown[c.Health]++
		rate, p95 := "-", "-"
		if c.Polls > 0 {
			rate, p95 = fmt.Sprintf("%.1f%%", c.SuccessRate*100), secs(c.LatencyP95Seconds)
		}
		var note string
		switch {
		case c.Paused:
			note = "paused by " + orUnknown(c.PausedBy) + " " + ago(c.PausedAt)
		case c.Stale:
			missed := fmt.Sprintf("%d intervals missed", c.MissedIntervals)
			note = missed
			if c.LastError != "" {
				note += "; " + admin.ShortError(c.LastError, listErrorWidth-len(missed)-2)
			}
		default:
			note = admin.ShortError(c.LastError, listErrorWidth)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Health, c.Name, c.Type, interval(c),
			ago(c.LastSuccess), until(c.NextDue), rate, p95, note)
	}
	_ = t.Flush()
	all := 0
	for _, n := range r.Counts {
		all += n
	}
	// The footer counts the rows above; a filtered list says of how many.
	summary := plural(len(r.Connectors), "connector")
	if filtered || len(r.Connectors) != all {
		summary = fmt.Sprintf("%d of %s shown", len(r.Connectors), plural(all, "connector"))
	}
	if parts := byHealth(shown); parts != "" {
		summary += ": " + parts
	}
	fmt.Fprintf(w, "\n%s (stale after %d missed intervals)\n", summary, r.StaleAfter)
}

// interval is a list row's interval: an adaptive connector's effective one.
func interval(c admin.Connector) string {
	if c.EffectiveInterval != "" {
		return c.EffectiveInterval + " (adaptive)"
	}
	return c.Interval
}

// byHealth is "3 failing, 1 ok": the counts, worst health first.
func byHealth(counts map[string]int) string {
	var parts []string
	for _, h := range admin.Healths() {
		if n := counts[h]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, h))
		}
	}
	return strings.Join(parts, ", ")
}

func printStatus(w io.Writer, s admin.Status) {
	t := table(w)
	row := func(k string, v any) { fmt.Fprintf(t, "%s:\t%v\n", k, v) }
	row("connector", s.Name+" ("+s.Type+", every "+s.Interval+")")
	if s.Adaptive != "" {
		row("effective interval", s.EffectiveInterval+" (adaptive "+s.Adaptive+": shorter after polls that find changes, longer after those that find none)")
	}
	row("health", s.Health)
	if s.Paused {
		row("paused", "since "+clock(*s.PausedAt)+" by "+orUnknown(s.PausedBy))
	}
	if !s.Enabled {
		row("enabled", "no (the config disables it)")
	}
	row("last poll", ago(s.LastPoll))
	row("last success", ago(s.LastSuccess))
	row("next due", until(s.NextDue))
	row("missed intervals", s.MissedIntervals)
	row("failures in a row", s.ConsecutiveFailures)
	if s.BackoffUntil != nil {
		whose := "after failed polls"
		if s.BackoffBy == store.WaitUpstream {
			whose = "the upstream asked"
		}
		row("backing off", "until "+clock(*s.BackoffUntil)+" ("+span(time.Duration(s.BackoffSeconds*float64(time.Second)))+" more; "+whose+")")
	}
	if s.Budget != nil {
		row("budget", s.Budget.Summary(time.Now()))
	}
	if s.LastError != "" {
		row("last error", s.LastError)
	}
	row("polls", fmt.Sprintf("%d (%d failed, %d skipped), success rate %.1f%%, p95 %s, avg %s",
		s.Polls, s.Failures, s.Skipped, s.SuccessRate*100, secs(s.LatencyP95Seconds), secs(s.LatencyAvg)))
	row("429s", fmt.Sprintf("%d of the last %d polls", s.RateLimited, len(s.Recent)))
	row("cursor", orDash(s.Cursor))
	row("etag", orDash(s.ETag))
	row("last-modified", orDash(s.LastModified))
	row("seen items", s.SeenItems)
	row("generation", s.Generation)
	if s.Lease.Holder != "" {
		row("lease", fmt.Sprintf("held by %s, token %d, %s left", s.Lease.Holder, s.Lease.Token, secs(s.Lease.ExpiresInSeconds)))
	} else {
		row("lease", "free")
	}
	row("fencing token", s.Lease.Fence)
	_ = t.Flush()
	if len(s.Recent) == 0 {
		return
	}
	fmt.Fprintln(w, "\nrecent polls:")
	t = table(w)
	fmt.Fprintln(t, "STARTED\tOUTCOME\tTOOK\tFETCHED\tPUBLISHED\tWORKER\tERROR")
	for _, p := range s.Recent[max(0, len(s.Recent)-10):] {
		fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", clock(p.StartedAt), p.Outcome, secs(p.DurationSeconds),
			p.ItemsFetched, p.ItemsPublished, p.Worker, admin.ShortError(p.Error, 60))
	}
	_ = t.Flush()
}

func printTrigger(w io.Writer, r admin.TriggerReply) {
	fmt.Fprintf(w, "%s: %s in %s, started %s on worker %s (fetched %d, published %d, failed items %d, token %d)\n",
		r.Connector, r.Outcome, secs(r.DurationSeconds), clock(r.StartedAt), r.Worker,
		r.ItemsFetched, r.ItemsPublished, r.ItemsFailed, r.FencingToken)
	if r.WaitedSeconds >= 0.5 {
		fmt.Fprintf(w, "  waited %s for a running poll's lease\n", secs(r.WaitedSeconds))
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
}

// printReload prints each process's answer. Processes that reject a file
// reject it for the same problems: each set of problems is printed once,
// under the processes that gave it.
func printReload(w io.Writer, replies []admin.ReloadReply, missing []string) {
	replies = slices.Clone(replies)
	slices.SortFunc(replies, func(a, b admin.ReloadReply) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Replica, b.Replica))
	})
	type rejection struct {
		who      []string
		problems []admin.Problem
		err      string
	}
	var rejections []*rejection
	for _, r := range replies {
		who := r.Service + " " + r.Replica
		if r.OK && r.Source == "" && r.Connectors == 0 {
			fmt.Fprintf(w, "%s: ok, no connectors file to apply (it serves the catalog; pollctl apply changes it)\n", who)
			continue
		}
		if r.OK {
			fmt.Fprintf(w, "%s: ok, %d connectors (%d enabled)\n", who, r.Connectors, r.Enabled)
			continue
		}
		i := slices.IndexFunc(rejections, func(x *rejection) bool {
			return x.err == r.Error && slices.Equal(x.problems, r.Problems)
		})
		if i < 0 {
			rejections = append(rejections, &rejection{problems: r.Problems, err: r.Error})
			i = len(rejections) - 1
		}
		rejections[i].who = append(rejections[i].who, who)
	}
	for _, x := range rejections {
		fmt.Fprintf(w, "rejected by %s; the catalog stays as it was:\n", strings.Join(x.who, ", "))
		if len(x.problems) == 0 {
			fmt.Fprintf(w, "  %s\n", x.err)
		}
		for _, p := range x.problems {
			if p.Path != "" {
				fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Message)
			} else {
				fmt.Fprintf(w, "  %s\n", p.Message)
			}
		}
	}
	for _, m := range missing {
		fmt.Fprintf(w, "%s: did not answer\n", m)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
