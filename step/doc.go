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
//
// A step's properties come as the JSON the engine was given (with its inputs set in it) and are
// read once, into the values CUE reads from JSON: an integer stays an int. An action's
// parameters come out of CUE as JSON once: Call.Params is that JSON decoded, and Call.Decode
// reads it into a provider's struct. Each file says at its top what it holds; evaluation.go
// follows one evaluation from start to end.
package step
