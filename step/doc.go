// Package step is stepflow's CUE runtime: it loads and caches step definitions, checks a step's
// parameter against its properties, walks the template's actions in field order calling the Go
// providers registered for them, and evaluates `if` conditions and outputs.
//
// An evaluation of a step fills `parameter` and `context`, checks the parameter, then makes
// passes over the template's fields, depth first in the order they are written (`@step(n)`
// first). Each pass runs the first action not run yet whose parameters are concrete and fills
// its result back (`$returns`, or the legacy vela/op fields), so that fields under `if` appear
// once what they test is known. Actions with side effects run once per attempt of a step:
// their results are kept in the step's memo and replayed when the step is evaluated again
// after a wait. Control actions (wait, suspend, fail, break) end the evaluation through the
// Session.
package step
