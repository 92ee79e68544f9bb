// Package cputime reads the CPU time a process has used together with its child processes, so
// that the tests and benchmarks of work done in child CUE evaluators count it where it is done,
// and can tell that a killed evaluation left nothing computing.
package cputime

import "time"

// Total is the CPU time, user and system, of this process, of its children that ended and were
// waited for, and of those still running: all the work done, for a benchmark. It fails where
// the system does not say.
func Total() (time.Duration, error) { return used(true) }

// Live is the CPU time of this process and of its children still running, not of those that
// ended: whether something is still computing shows in how it grows, which a child reaped
// meanwhile (its time moving to the ended children's) would blur.
func Live() (time.Duration, error) { return used(false) }
