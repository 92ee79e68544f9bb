package apiservertest

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// Namespace returns a namespace name for the test, new at each call: the test's name made a
// DNS label, and a random suffix. The API server outlives a test (it serves a package's tests
// together), so a test run again (-count) starts in an empty namespace rather than among
// what it left there.
func Namespace(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, strings.TrimPrefix(t.Name(), "Test"))
	const suffix = 6
	name = strings.Trim(name[:min(len(name), 63-suffix-1)], "-")
	var b strings.Builder
	for range suffix {
		b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[rand.IntN(36)])
	}
	return name + "-" + b.String()
}
