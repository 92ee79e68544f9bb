package engine

import (
	"math"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// Backoff spaces repeated attempts: Initial, then multiplied by Factor each time, at most Max.
type Backoff struct {
	Initial time.Duration
	Factor  float64
	Max     time.Duration
}

// Delay is the wait before attempt n+1 after n failed ones (n >= 1).
func (b Backoff) Delay(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(b.Initial) * math.Pow(b.Factor, float64(n-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		return b.Max
	}
	return time.Duration(d)
}

// RetryPolicy bounds the retries of a step whose provider call errors.
type RetryPolicy struct {
	// Limit is how many errors a step attempt survives; the next one fails it FailedAfterRetries.
	Limit   int
	Backoff Backoff
}

// defaultBackoff fills the zero fields of b: initial, doubling, at most maxDelay.
func defaultBackoff(b Backoff, initial, maxDelay time.Duration) Backoff {
	if b.Initial <= 0 {
		b.Initial = initial
	}
	if b.Factor < 1 {
		b.Factor = 2
	}
	if b.Max < b.Initial {
		b.Max = max(maxDelay, b.Initial)
	}
	return b
}

// retryFor is the retry policy of a step: the engine's, overridden by the step's retry.
func (m *machine) retryFor(s *v1alpha1.WorkflowStepBase) RetryPolicy {
	p := m.retry
	r := s.Retry
	if r == nil {
		return p
	}
	if r.Limit != nil {
		p.Limit = int(*r.Limit)
	}
	if b := r.Backoff; b != nil {
		if d, err := time.ParseDuration(b.Initial); err == nil && d > 0 {
			p.Backoff.Initial = d
		}
		if b.Factor != nil {
			if f := b.Factor.AsApproximateFloat64(); f >= 1 {
				p.Backoff.Factor = f
			}
		}
		if d, err := time.ParseDuration(b.Max); err == nil && d > 0 {
			p.Backoff.Max = d
		}
		if p.Backoff.Max < p.Backoff.Initial {
			p.Backoff.Max = p.Backoff.Initial
		}
	}
	return p
}
