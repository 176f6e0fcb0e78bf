package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

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
	switch {
	case d < 0:
		return "in " + span(-d)
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
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

func cut(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func printList(w io.Writer, r admin.ListReply) {
	t := table(w)
	fmt.Fprintln(t, "HEALTH\tNAME\tTYPE\tINTERVAL\tLAST SUCCESS\tNEXT\tSUCCESS\tP95\tLAST ERROR")
	for _, c := range r.Connectors {
		rate, p95 := "-", "-"
		if c.Polls > 0 {
			rate, p95 = fmt.Sprintf("%.1f%%", c.SuccessRate*100), secs(c.LatencyP95Seconds)
		}
		note := c.LastError
		if c.Paused {
			note = "paused by " + orUnknown(c.PausedBy) + " " + ago(c.PausedAt)
		} else if c.Stale {
			note = fmt.Sprintf("%d intervals missed; ", c.MissedIntervals) + note
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Health, c.Name, c.Type, c.Interval,
			ago(c.LastSuccess), until(c.NextDue), rate, p95, cut(note, 70))
	}
	_ = t.Flush()
	var parts []string
	for _, h := range admin.Healths() {
		if n := r.Counts[h]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, h))
		}
	}
	fmt.Fprintf(w, "\n%d connectors shown: %s (stale after %d missed intervals)\n", len(r.Connectors), strings.Join(parts, ", "), r.StaleAfter)
}

func printStatus(w io.Writer, s admin.Status) {
	t := table(w)
	row := func(k string, v any) { fmt.Fprintf(t, "%s:\t%v\n", k, v) }
	row("connector", s.Name+" ("+s.Type+", every "+s.Interval+")")
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
			p.ItemsFetched, p.ItemsPublished, p.Worker, cut(p.Error, 60))
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

func printReload(w io.Writer, replies []admin.ReloadReply, missing []string) {
	for _, r := range replies {
		if r.OK {
			fmt.Fprintf(w, "%s %s: ok, %d connectors (%d enabled)\n", r.Service, r.Replica, r.Connectors, r.Enabled)
			continue
		}
		fmt.Fprintf(w, "%s %s: rejected; it keeps running %d connectors\n", r.Service, r.Replica, r.Connectors)
		if len(r.Problems) == 0 {
			fmt.Fprintf(w, "  %s\n", r.Error)
		}
		for _, p := range r.Problems {
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
