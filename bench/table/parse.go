package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// results are the figures of each benchmark in go test's output, by benchmark name (without
// the -GOMAXPROCS suffix) and unit.
type results map[string]map[string]float64

// parse reads go test -bench's text output. A result line is the benchmark's name, its
// iterations, then value-unit pairs; the name is printed before the benchmark runs, so what
// the benchmark writes meanwhile can come between the name and the rest of its line.
func parse(out string) results {
	procs := regexp.MustCompile(`-\d+$`)
	res := results{}
	name := ""
	for line := range strings.Lines(out) {
		rest := line
		if strings.HasPrefix(line, "Benchmark") {
			fields := strings.Fields(line)
			name = procs.ReplaceAllString(fields[0], "")
			rest = strings.TrimPrefix(line, fields[0])
		}
		fields := strings.Fields(rest)
		if name == "" || len(fields) < 3 || len(fields)%2 == 0 || !strings.Contains(rest, " ns/op") {
			continue
		}
		if _, err := strconv.Atoi(fields[0]); err != nil {
			continue
		}
		figures := map[string]float64{}
		for i := 1; i+1 < len(fields); i += 2 {
			if v, err := strconv.ParseFloat(fields[i], 64); err == nil {
				figures[fields[i+1]] = v
			}
		}
		res[name] = figures
	}
	return res
}

// nanos shows a time in nanoseconds in the unit that suits it.
func nanos(ns float64) string {
	switch {
	case ns < 1e3:
		return fmt.Sprintf("%.0f ns", ns)
	case ns < 1e6:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	case ns < 1e9:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	}
	return fmt.Sprintf("%.2f s", ns/1e9)
}

func us(v float64) string      { return count(v) + " µs" }
func ms(v float64) string      { return decimal(v) + " ms" }
func secs(v float64) string    { return decimal(v) + " s" }
func kb(v float64) string      { return decimal(v) + " KB" }
func bytesKB(v float64) string { return kb(v / 1024) }
func mb(v float64) string      { return count(v) + " MB" }

// decimal shows v with two significant decimals below 10, one below 100, none above.
func decimal(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return count(v)
}

// count shows v rounded to a whole number, its thousands separated by commas.
func count(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return sign + s
}
