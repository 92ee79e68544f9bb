package store

import (
	"context"
	"time"

	"github.com/stepflow/stepflow/engine"
)

// SweepBatch is how many runs one transaction of Sweep deletes at most, and sweepBatches how
// many transactions one Sweep makes at most: a sweep never holds the store for long, and what
// it leaves is for the next.
const (
	SweepBatch   = 100
	sweepBatches = 10
)

// SweepEvery is how often a server sweeps its store.
const SweepEvery = time.Minute

// Sweep deletes the finished runs that retention r lets go at now, with their logs, in
// batches of SweepBatch, at most ten of them; owns (nil: every run) says which runs this
// process may delete (a server replica: those of its leases). It returns the keys deleted,
// with the error that stopped it, if any.
func Sweep(ctx context.Context, runs Runs, r engine.Retention, now time.Time, owns func(engine.Key) bool) ([]engine.Key, error) {
	var all []engine.Key
	for range sweepBatches {
		keys, err := runs.DeleteExpired(ctx, r, now, SweepBatch, owns)
		all = append(all, keys...)
		if err != nil || len(keys) < SweepBatch {
			return all, err
		}
	}
	return all, nil
}
