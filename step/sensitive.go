// sensitive.go: the @sensitive() attribute: finding it in a template and collecting the values
// it marks (evaluation.markSensitive uses them).

package step

import (
	"encoding/json"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"

	"github.com/stepflow/stepflow/redact"
)

// attrSensitive is the attribute that marks a field of a definition as a secret: a parameter
// (`token: string @sensitive()`), or any field of the template, such as one computed from an
// action's result (`token: json.Unmarshal(get.$returns.body).token @sensitive()`). CUE, and so
// KubeVela, ignores attributes it does not know.
const attrSensitive = "sensitive"

// hasAttribute reports whether the file has a field attribute named key anywhere.
func hasAttribute(f *ast.File, key string) bool {
	found := false
	ast.Walk(f, func(n ast.Node) bool {
		if a, ok := n.(*ast.Attribute); ok {
			if k, _ := a.Split(); k == key {
				found = true
			}
		}
		return !found
	}, nil)
	return found
}

// sensitiveValues returns the values of the fields of v, a filled template, that carry the
// @sensitive() attribute, at any depth: every string and number in a marked field, whatever
// its type. Fields that are not concrete yet are left out.
func sensitiveValues(v cue.Value) []string {
	var out []string
	var walk func(v cue.Value)
	walk = func(v cue.Value) {
		// By its fields rather than its kind: a struct with a field in error (a parameter
		// that does not fit) is an error as a whole, and its other fields are still there.
		if it, err := v.Fields(); err == nil {
			for it.Next() {
				f := it.Value()
				if a := f.Attribute(attrSensitive); a.Err() == nil {
					out = append(out, leaves(f)...)
					continue
				}
				walk(f)
			}
			return
		}
		if it, err := v.List(); err == nil {
			for it.Next() {
				walk(it.Value())
			}
		}
	}
	walk(v)
	return out
}

// leaves are the strings and numbers of a value, as far as it is concrete.
func leaves(v cue.Value) []string {
	b, err := v.MarshalJSON()
	if err != nil {
		return nil
	}
	var x any
	if json.Unmarshal(b, &x) != nil {
		return nil
	}
	return redact.Leaves(x)
}
