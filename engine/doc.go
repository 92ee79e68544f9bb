// Package engine is the run state machine and scheduler: it decides which steps of a WorkflowRun
// run next, applies their results, and drives suspend, resume, terminate and restart. It does no
// I/O of its own: time, storage and step evaluation come through the interfaces it defines.
package engine
