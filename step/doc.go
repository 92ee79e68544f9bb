// Package step is stepflow's CUE runtime: it loads and caches step definitions, checks a step's
// parameter against its properties, walks the template's actions in field order calling the Go
// providers registered for them, and evaluates `if` conditions and outputs.
package step
