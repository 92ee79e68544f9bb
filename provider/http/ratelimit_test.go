package http

import (
	"fmt"
	"testing"
	"time"
)

func TestRateLimiterForgetsKeysWhenFull(t *testing.T) {
	l := newRateLimiter()
	t0 := time.Unix(1_700_000_000, 0)
	// "old" was used first and its window has passed by the time the limiter is full.
	l.allow("old", t0, 1, time.Second)
	for i := range maxLimiterKeys - 1 {
		l.allow(fmt.Sprint("k", i), t0.Add(time.Minute), 1, time.Hour)
	}
	if !l.allow("new", t0.Add(90*time.Second), 1, time.Hour) {
		t.Fatal("a new key was refused")
	}
	if len(l.keys) != maxLimiterKeys {
		t.Errorf("limiter holds %d keys, want at most %d", len(l.keys), maxLimiterKeys)
	}
	if _, ok := l.keys["old"]; ok {
		t.Error("the expired key was kept and a live one dropped")
	}
	// With every key live, the least recently used one goes, and the others keep their counts.
	if !l.allow("newer", t0.Add(2*time.Minute), 1, time.Hour) {
		t.Fatal("a new key was refused")
	}
	if len(l.keys) != maxLimiterKeys {
		t.Errorf("limiter holds %d keys, want %d", len(l.keys), maxLimiterKeys)
	}
	if l.allow("new", t0.Add(2*time.Minute), 1, time.Hour) {
		t.Error("key new forgot its call")
	}
}
