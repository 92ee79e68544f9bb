package http

import (
	"sync"
	"time"
)

// maxLimiterKeys bounds how many keys the rate limiter remembers; when it is full, the key
// used least recently is forgotten.
const maxLimiterKeys = 1024

// rateLimiter allows, per key, at most a limit of calls in any window of a period: it remembers
// when the recent calls under each key were made.
type rateLimiter struct {
	mu   sync.Mutex
	keys map[string]*callLog
}

// callLog is the times of the recent calls allowed under one key, oldest first.
type callLog struct {
	period time.Duration
	times  []time.Time
}

func newRateLimiter() *rateLimiter {
	return &rateLimiter{keys: map[string]*callLog{}}
}

// allow reports whether a call under key at now stays within limit calls per period, and if so
// counts it.
func (l *rateLimiter) allow(key string, now time.Time, limit int, period time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	log, ok := l.keys[key]
	if !ok {
		if len(l.keys) >= maxLimiterKeys {
			l.forgetOne(now)
		}
		log = &callLog{}
		l.keys[key] = log
	}
	log.period = period
	log.times = since(log.times, now.Add(-period))
	if len(log.times) >= limit {
		return false
	}
	log.times = append(log.times, now)
	return true
}

// forgetOne makes room for a key: it drops the keys whose calls are all out of their window, or
// else the key whose last call is the oldest.
func (l *rateLimiter) forgetOne(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, log := range l.keys {
		last := time.Time{}
		if n := len(log.times); n > 0 {
			last = log.times[n-1]
		}
		if !last.After(now.Add(-log.period)) {
			delete(l.keys, k)
			continue
		}
		if oldestKey == "" || last.Before(oldest) {
			oldestKey, oldest = k, last
		}
	}
	if len(l.keys) >= maxLimiterKeys {
		delete(l.keys, oldestKey)
	}
}

// since returns the times after cutoff; times are sorted.
func since(times []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(times) && !times[i].After(cutoff) {
		i++
	}
	return times[i:]
}
