package bench

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// rssProbe measures this process's resident memory over part of a benchmark: what it was at
// the start, and its peak since (VmHWM of /proc/self/status). The peak is reset at the start by
// writing 5 to /proc/self/clear_refs; where the kernel does not allow that, the peak is the
// process's since it began, which the benchmark's log says.
type rssProbe struct {
	start uint64 // bytes resident at the start
	reset bool   // whether the peak was reset at the start
}

// startRSS returns the heap to the operating system (so that the start is what is live, not
// what an earlier benchmark left mapped), resets the peak and reads the resident size.
func startRSS(b *testing.B) rssProbe {
	b.Helper()
	debug.FreeOSMemory()
	reset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	start, err := procStatus("VmRSS")
	if err != nil {
		b.Fatal(err)
	}
	return rssProbe{start: start, reset: reset}
}

// report reports the peak as peak-rss-MB and, when runs > 0, the growth from the start per run
// as rss-KB/run.
func (p rssProbe) report(b *testing.B, runs int) {
	b.Helper()
	peak, err := procStatus("VmHWM")
	if err != nil {
		b.Fatal(err)
	}
	if !p.reset {
		b.Log("peak RSS: the process's high-water mark since it began (clear_refs not permitted)")
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MB")
	if runs > 0 && peak > p.start {
		b.ReportMetric(float64(peak-p.start)/float64(runs)/1024, "rss-KB/run")
	}
}

// procStatus reads a size field of /proc/self/status ("VmRSS", "VmHWM") in bytes.
func procStatus(field string) (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		num, _ := strings.CutSuffix(strings.TrimSpace(rest), " kB")
		kb, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %q: %w", field, rest, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}
