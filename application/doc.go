// Package application renders KubeVela Applications: each component's workload from its
// ComponentDefinition's `output`, the objects beside it from `outputs`, its traits' `patch`
// applied to the workload (with KubeVela's patch strategies) and their `outputs` added, with
// `context` filled as KubeVela fills it and the labels KubeVela puts on rendered objects. It
// also judges health: a definition's `status.healthPolicy` and `customStatus` evaluated
// against the live objects the caller read.
//
// Render and Health are the evaluations delivery makes (CheckTemplate and CheckProperties are
// vet's), each compiling its templates in a fresh cue.Context, so that they can later be moved
// behind the step runtime's bounded evaluator without changing their callers.
package application
