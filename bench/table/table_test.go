package main

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	// The second benchmark's name is printed before it runs, so a log line written while it
	// ran sits between the name and its figures.
	out := `goos: linux
BenchmarkWarmEval-2                	    9087	    127126 ns/op	   49636 B/op	     322 allocs/op
BenchmarkEmbeddedThroughput/runs=1000-2   	2026/01/02 engine: something
       1	4100000000 ns/op	  253.0 runs/s	 0.4980 p50-step-gap-ms
--- BENCH: BenchmarkEmbeddedThroughput/runs=1000-2
    engine_test.go:1: a log line 1 ns/op
BenchmarkWarmEvalDisjunction20	     889	   1145757 ns/op
PASS
`
	res := parse(out)
	for _, c := range []struct {
		bench, unit string
		want        float64
	}{
		{"BenchmarkWarmEval", "B/op", 49636},
		{"BenchmarkEmbeddedThroughput/runs=1000", "runs/s", 253},
		{"BenchmarkEmbeddedThroughput/runs=1000", "p50-step-gap-ms", 0.498},
		{"BenchmarkWarmEvalDisjunction20", "ns/op", 1145757},
	} {
		if got, ok := res[c.bench][c.unit]; !ok || got != c.want {
			t.Errorf("%s %s = %v (present %v), want %v", c.bench, c.unit, got, ok, c.want)
		}
	}
	if len(res) != 3 {
		t.Errorf("parsed %d benchmarks, want 3: %v", len(res), res)
	}
}

func TestFormat(t *testing.T) {
	for got, want := range map[string]string{
		count(1234567):  "1,234,567",
		count(999):      "999",
		nanos(127126):   "127.1 µs",
		nanos(4.1e9):    "4.10 s",
		bytesKB(49636):  "48.5 KB",
		ms(7.5):         "7.50 ms",
		decimal(7.0612): "7.06",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if !strings.Contains(lastLine("x\n--- FAIL: y\nFAIL\nexit status 1\nFAIL\tpkg 1s\n"), "--- FAIL: y") {
		t.Error("lastLine does not skip go test's summary")
	}
}

func TestWrap(t *testing.T) {
	got := wrap("- one two three four", 9, "  ")
	if want := "- one two\n  three\n  four"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestShellWords(t *testing.T) {
	got := shellWords([]string{"test", "-run", "^$", "-bench", "^X/runs=(1|2)$", "it's"})
	if want := `test -run '^$' -bench '^X/runs=(1|2)$' 'it'\''s'`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
