package manifest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a file, located at a line and column and, when it concerns a field, at
// the field's path (for example spec.workflowSpec.steps[1].timeout).
type Error struct {
	// File is the file name as given to Decode; empty when the object came from elsewhere.
	File string
	// Line and Column are 1-based; 0 when unknown.
	Line, Column int
	// Path is the field path, empty for a problem with the document as a whole.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error formats the problem as "file:line:col: path: msg", leaving out the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is a list of problems, sorted by file and line once Sort has been called (every list this
// package returns is sorted).
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so that errors.As finds an *Error in an Errors.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Sort orders the problems by file, line, column and path, keeping the order of equal ones.
func (es Errors) Sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Path, b.Path),
		)
	})
}

// errOrNil returns es as an error, or nil when it is empty (avoiding a non-nil interface holding
// an empty list).
func (es Errors) errOrNil() error {
	if len(es) == 0 {
		return nil
	}
	es.Sort()
	return es
}
