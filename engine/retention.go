package engine

import (
	"time"
)

// DefaultRetain is how long finished runs are kept when the operator says nothing (--retain).
const DefaultRetain = 30 * 24 * time.Hour

// Retention says which finished runs are deleted, with their logs: what the operator sets for
// every run (--retain, --retain-count). A run's own ttlSecondsAfterFinished, or its template's
// (Run.TTLSecondsAfterFinished), wins over TTL. Runs that have not finished are always kept.
type Retention struct {
	// TTL is how long a finished run is kept after it ended; 0 keeps it for ever.
	TTL time.Duration
	// Count keeps, of the finished runs of one template in one namespace (the runs with
	// inline steps counting as one template), only the Count that ended last; 0 keeps them all.
	Count int
}

// ExpiresAt is when the run is deleted by its time to live: its end and its own TTL, or
// Retention.TTL. It is zero for a run that has not finished or is kept for ever (Count may
// still delete it sooner).
func (r Retention) ExpiresAt(run *Run) time.Time {
	if own := run.ExpiresAt(); !own.IsZero() || run.TTLSecondsAfterFinished != nil {
		return own
	}
	if r.TTL <= 0 || !run.Object.Status.Finished {
		return time.Time{}
	}
	return Ended(run).Add(r.TTL)
}

// ExpiresAt is when the run is deleted by its own time to live (Run.TTLSecondsAfterFinished),
// zero when it has none or has not finished: what a store keeps beside the run to find it.
func (r *Run) ExpiresAt() time.Time {
	if r.TTLSecondsAfterFinished == nil || !r.Object.Status.Finished {
		return time.Time{}
	}
	return Ended(r).Add(time.Duration(*r.TTLSecondsAfterFinished) * time.Second)
}

// Ended is when a finished run ended: its status's endTime or, for a run stored without one,
// its start or creation time.
func Ended(run *Run) time.Time {
	st := &run.Object.Status
	switch {
	case !st.EndTime.IsZero():
		return st.EndTime.Time
	case !st.StartTime.IsZero():
		return st.StartTime.Time
	}
	return run.Object.CreationTimestamp.Time
}
