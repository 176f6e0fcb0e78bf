package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// ProcCPU reads a process's CPU time so far, user plus system, in clock
// ticks (see ClockTick), from /proc/<pid>/stat.
func ProcCPU(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU returns utime+stime (fields 14 and 15) of a /proc/<pid>/stat
// line. The command name (field 2) is in parentheses and may itself hold
// spaces and parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no ')' after the command name")
	}
	// After ")": field 3 (state) is the first.
	f := strings.Fields(stat[i+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want more than %d", len(f), stime)
	}
	u, err := strconv.ParseInt(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: utime: %w", err)
	}
	s, err := strconv.ParseInt(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: stime: %w", err)
	}
	return u + s, nil
}

// ProcRSS reads a process's resident set size in bytes from
// /proc/<pid>/status (VmRSS).
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusKB(string(b), "VmRSS")
}

// parseStatusKB returns the field of /proc/<pid>/status (a "kB" value) in bytes.
func parseStatusKB(status, field string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(v), " ")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc status %s: %w", field, err)
		}
		if unit != "kB" {
			return 0, fmt.Errorf("proc status %s: unit %q, want kB", field, unit)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("proc status: no %s line", field)
}

// SystemCPU is the machine-wide CPU time from the first line of /proc/stat,
// in clock ticks.
type SystemCPU struct {
	// Busy is everything but idle and iowait.
	Busy int64
	// Total includes idle and iowait.
	Total int64
}

// ReadSystemCPU reads /proc/stat.
func ReadSystemCPU() (SystemCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return SystemCPU{}, err
	}
	return parseSystemCPU(string(b))
}

// parseSystemCPU reads the aggregate "cpu" line: user nice system idle
// iowait irq softirq steal guest guest_nice. guest and guest_nice are
// already counted in user and nice, so they are left out of the total.
func parseSystemCPU(stat string) (SystemCPU, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return SystemCPU{}, errors.New(`proc stat: the first line is not the aggregate "cpu" line`)
	}
	var vals []int64
	for i, s := range f[1:] {
		if i >= 8 { // guest, guest_nice
			break
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return SystemCPU{}, fmt.Errorf("proc stat: cpu field %d: %w", i+1, err)
		}
		vals = append(vals, n)
	}
	var c SystemCPU
	for i, v := range vals {
		c.Total += v
		if i != 3 && i != 4 { // idle, iowait
			c.Busy += v
		}
	}
	return c, nil
}

// BusyFraction is the share of all CPUs busy between two readings, 0..1.
func BusyFraction(before, after SystemCPU) float64 {
	total := after.Total - before.Total
	if total <= 0 {
		return 0
	}
	return float64(after.Busy-before.Busy) / float64(total)
}

var clockTick = sync.OnceValue(func() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100 // USER_HZ on every Linux architecture Go runs on
})

// ClockTick is sysconf(_SC_CLK_TCK), the unit of /proc CPU times (100 on
// Linux); it asks getconf once, as Go has no sysconf without cgo.
func ClockTick() int64 { return clockTick() }

// CPUInfo returns the machine's CPU model and number of online CPUs.
func CPUInfo() (model string, cpus int) {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		case "processor":
			cpus++
		}
	}
	if model == "" {
		model = "unknown"
	}
	return model, cpus
}
