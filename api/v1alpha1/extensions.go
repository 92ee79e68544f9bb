package v1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The iteration variables a step inside a loop may take as input (`inputs[].from`), besides
// item.<path> for a field of the item.
const (
	VarItem  = "item"
	VarIndex = "index"
)

// Loops reports whether the step iterates: it has a forEach or a matrix.
func (s *WorkflowStepBase) Loops() bool {
	return s.ForEach != nil || s.Matrix != nil
}

// IsIterationVar reports whether from, in the inputs of a step inside a loop, names the
// iteration's item or index rather than a run variable.
func IsIterationVar(from string) bool {
	return from == VarItem || from == VarIndex || strings.HasPrefix(from, VarItem+".")
}

// ContextPath returns the path into the step's context that an input's from names
// (context.<path>), and whether it names one. KubeVela resolves an input that no run variable
// holds from the step's context, so `from: context.name` reads the run's name.
func ContextPath(from string) (string, bool) {
	path, ok := strings.CutPrefix(from, "context.")
	return path, ok && path != ""
}

// matrixLists decodes a matrix, an object of named lists, and returns its names in
// alphabetical order with their lists. The error says which name does not hold a list.
func matrixLists(m *runtime.RawExtension) ([]string, map[string][]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if m == nil || len(bytes.TrimSpace(m.Raw)) == 0 {
		return nil, nil, fmt.Errorf("a matrix is an object of named lists")
	}
	if err := json.Unmarshal(m.Raw, &raw); err != nil || raw == nil {
		return nil, nil, fmt.Errorf("a matrix is an object of named lists")
	}
	names := slices.Sorted(maps.Keys(raw))
	lists := make(map[string][]json.RawMessage, len(raw))
	for _, name := range names {
		var values []json.RawMessage
		if err := json.Unmarshal(raw[name], &values); err != nil || values == nil {
			return nil, nil, fmt.Errorf("matrix %s: not a list", name)
		}
		lists[name] = values
	}
	return names, lists, nil
}

// MatrixSize counts the combinations of a matrix, the product of its lists' lengths, without
// building any: math.MaxInt stands for a product too large for an int. A matrix without lists
// has none.
func MatrixSize(m *runtime.RawExtension) (int, error) {
	names, lists, err := matrixLists(m)
	if err != nil {
		return 0, err
	}
	return matrixSize(names, lists), nil
}

func matrixSize(names []string, lists map[string][]json.RawMessage) int {
	if len(names) == 0 {
		return 0
	}
	n := 1
	for _, name := range names {
		l := len(lists[name])
		if l == 0 {
			return 0
		}
		if n > math.MaxInt/l {
			n = math.MaxInt // and it stays there, unless a later list is empty
			continue
		}
		n *= l
	}
	return n
}

// MatrixItems expands a matrix, an object of named lists, to its combinations: one object per
// combination with a value of each list, the names taken in alphabetical order, the first
// varying slowest. The error says which name does not hold a list. A matrix of more than max
// combinations (max < 0: no bound) is refused before any combination is built, counted as
// MatrixSize counts them.
func MatrixItems(m *runtime.RawExtension, maxItems int) ([]map[string]json.RawMessage, error) {
	names, lists, err := matrixLists(m)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, nil
	}
	size := matrixSize(names, lists)
	if maxItems >= 0 && size > maxItems {
		return nil, fmt.Errorf("%s combinations, more than %d", CountText(size), maxItems)
	}
	if size == 0 {
		return []map[string]json.RawMessage{}, nil
	}
	out := make([]map[string]json.RawMessage, 1, size)
	out[0] = map[string]json.RawMessage{}
	for _, name := range names {
		values := lists[name]
		next := make([]map[string]json.RawMessage, 0, len(out)*len(values))
		for _, combo := range out {
			for _, v := range values {
				c := make(map[string]json.RawMessage, len(combo)+1)
				maps.Copy(c, combo)
				c[name] = v
				next = append(next, c)
			}
		}
		out = next
	}
	return out, nil
}

// CountText writes a count of MatrixSize: math.MaxInt, which stands for any larger one, as
// "more than" it.
func CountText(n int) string {
	if n == math.MaxInt {
		return fmt.Sprintf("more than %d", math.MaxInt)
	}
	return strconv.Itoa(n)
}

// checkExtensions checks the stepflow extensions a step may carry: forEach, matrix, retry, and
// the properties of a `workflow` step. inLoop says that the step's group loops.
func (c *stepChecker) checkExtensions(s *stepRef, inLoop bool) {
	b := s.base
	if f := b.ForEach; f != nil {
		p := s.path.Child("forEach")
		hasItems := f.Items != nil && len(bytes.TrimSpace(f.Items.Raw)) > 0
		switch {
		case b.Matrix != nil && (hasItems || f.From != ""):
			c.errs = append(c.errs, field.Forbidden(p, "with a matrix, forEach only sets parallelism and failFast: the matrix says what to iterate over"))
		case b.Matrix == nil && hasItems == (f.From != ""):
			c.errs = append(c.errs, field.Required(p.Child("items"), "forEach needs the list to iterate over: items, or from naming a run variable (one of them)"))
		case hasItems:
			raw := bytes.TrimSpace(f.Items.Raw)
			if raw[0] != '[' {
				c.errs = append(c.errs, field.Invalid(p.Child("items"), clip(string(raw)), "forEach iterates over a list, and this is not one"))
			}
		}
		if f.Parallelism < 0 {
			c.errs = append(c.errs, field.Invalid(p.Child("parallelism"), f.Parallelism, "at least 1 (or leave it out for 1)"))
		}
	}
	if b.Matrix != nil {
		// Counted, not built: the limit of iterations (engine.Limits) is checked on the size.
		if _, err := MatrixSize(b.Matrix); err != nil {
			c.errs = append(c.errs, field.Invalid(s.path.Child("matrix"), clip(string(b.Matrix.Raw)), err.Error()))
		}
	}
	if inLoop && b.Loops() {
		c.errs = append(c.errs, field.Forbidden(s.path.Child("forEach"), "its step-group already loops: loops do not nest"))
	}
	if r := b.Retry; r != nil {
		p := s.path.Child("retry")
		if r.Limit != nil && *r.Limit < 0 {
			c.errs = append(c.errs, field.Invalid(p.Child("limit"), *r.Limit, "a limit cannot be negative"))
		}
		if bo := r.Backoff; bo != nil {
			for _, d := range []struct{ name, value string }{{"initial", bo.Initial}, {"max", bo.Max}} {
				if d.value == "" {
					continue
				}
				if v, err := time.ParseDuration(d.value); err != nil || v <= 0 {
					c.errs = append(c.errs, field.Invalid(p.Child("backoff", d.name), d.value, "a positive Go duration such as 1s or 1m"))
				}
			}
			if f := bo.Factor; f != nil && f.AsApproximateFloat64() < 1 {
				c.errs = append(c.errs, field.Invalid(p.Child("backoff", "factor"), fmt.Sprintf("%g", f.AsApproximateFloat64()), "a factor of at least 1"))
			}
		}
	}
	if b.Type == TypeWorkflow {
		c.checkWorkflowStep(s)
	}
}

// checkWorkflowStep checks the properties of a step that runs a Workflow template.
func (c *stepChecker) checkWorkflowStep(s *stepRef) {
	p := s.path.Child("properties")
	var props map[string]json.RawMessage
	if s.base.Properties != nil && len(s.base.Properties.Raw) > 0 {
		if err := json.Unmarshal(s.base.Properties.Raw, &props); err != nil {
			c.errs = append(c.errs, field.Invalid(p, clip(string(s.base.Properties.Raw)), "the properties of a workflow step are an object {name, context}"))
			return
		}
	}
	filled := map[string]bool{}
	for _, in := range s.base.Inputs {
		filled[strings.Split(in.ParameterKey, ".")[0]] = true
	}
	var name string
	if raw, ok := props["name"]; ok {
		if json.Unmarshal(raw, &name) != nil || name == "" {
			c.errs = append(c.errs, field.Invalid(p.Child("name"), clip(string(raw)), "the name of a Workflow template"))
		}
	} else if !filled["name"] {
		c.errs = append(c.errs, field.Required(p.Child("name"), "the Workflow template the step runs"))
	}
	if raw, ok := props["context"]; ok {
		if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
			c.errs = append(c.errs, field.Invalid(p.Child("context"), clip(string(raw)), "the child run's context is an object"))
		}
	}
	for k := range props {
		if k != "name" && k != "context" {
			c.errs = append(c.errs, field.NotSupported(p.Child(k), k, []string{"name", "context"}))
		}
	}
}

// checkSwitch checks a Switch group: it has cases, a case without `if` (the default) is the last
// one, and cases do not depend on each other: one of them runs.
func (c *stepChecker) checkSwitch(i int) {
	s := &c.steps[i]
	p := c.top.steps[i].path
	if len(s.SubSteps) == 0 {
		c.errs = append(c.errs, field.Required(p.Child("subSteps"), "a Switch step-group needs sub-steps: its cases"))
		return
	}
	for j, sub := range c.groups[i].steps {
		if strings.TrimSpace(sub.base.If) == "" && j < len(s.SubSteps)-1 {
			c.errs = append(c.errs, field.Invalid(sub.path.Child("if"), "", fmt.Sprintf(
				"a case without if is the default and always matches: the cases after it (%s) could never run; make it the last one",
				c.groups[i].steps[j+1].name)))
		}
		if len(sub.base.DependsOn) > 0 {
			c.errs = append(c.errs, field.Forbidden(sub.path.Child("dependsOn"), "the cases of a Switch group do not depend on each other: only one runs"))
		}
	}
}
