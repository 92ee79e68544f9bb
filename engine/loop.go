package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// statusEntries bounds the iterations a looping step lists in the WorkflowRun status: the
// failed ones first, then the most recent. Run.Loops keeps them all.
const statusEntries = 20

// beginLoop resolves the items of a looping step that starts, refusing more than the limit.
func beginLoop(run *Run, n *node, limits Limits) error {
	items, err := loopItems(run, n.spec, limits)
	if err != nil {
		return err
	}
	if err := limits.iterationsError(len(items)); err != nil {
		return err
	}
	if err := limits.checkLoopItems(run, items); err != nil {
		return fmt.Errorf("%d items: %w", len(items), err)
	}
	if run.Loops == nil {
		run.Loops = map[string]*Loop{}
	}
	n.loop = &Loop{Items: items}
	n.iters = nil
	run.Loops[n.name] = n.loop
	n.status.Iterations = &v1alpha1.IterationsStatus{Total: len(items)}
	return nil
}

// loopItems are the values a looping step iterates over: its forEach items, the run variable its
// forEach reads, or the combinations of its matrix, which are counted first: a matrix of more
// combinations than the limit is refused before any is built.
func loopItems(run *Run, s *v1alpha1.WorkflowStepBase, limits Limits) ([]json.RawMessage, error) {
	var items []json.RawMessage
	switch f := s.ForEach; {
	case s.Matrix != nil:
		size, err := v1alpha1.MatrixSize(s.Matrix)
		if err != nil {
			return nil, fmt.Errorf("matrix: %w", err)
		}
		if err := limits.iterationsError(size); err != nil {
			return nil, fmt.Errorf("matrix: %w", err)
		}
		combos, err := v1alpha1.MatrixItems(s.Matrix, limits.Iterations)
		if err != nil {
			return nil, fmt.Errorf("matrix: %w", err)
		}
		for _, c := range combos {
			b, err := json.Marshal(c)
			if err != nil {
				return nil, fmt.Errorf("matrix: %w", err)
			}
			items = append(items, b)
		}
		return items, nil
	case f.From != "":
		raw, ok := run.Vars[f.From]
		if !ok {
			return nil, fmt.Errorf("forEach.from: no step has output the run variable %q", f.From)
		}
		if err := json.Unmarshal(raw, &items); err != nil || items == nil {
			return nil, fmt.Errorf("forEach.from: the run variable %q is not a list: %s", f.From, clip(string(raw)))
		}
	case f.Items != nil:
		if err := json.Unmarshal(f.Items.Raw, &items); err != nil || items == nil {
			return nil, fmt.Errorf("forEach.items: not a list: %s", clip(string(f.Items.Raw)))
		}
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	return items, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// loopSettings are a looping step's parallelism (at least 1) and failFast.
func loopSettings(s *v1alpha1.WorkflowStepBase) (int, bool) {
	par, failFast := 1, true
	if f := s.ForEach; f != nil {
		if f.Parallelism > 1 {
			par = int(f.Parallelism)
		}
		if f.FailFast != nil {
			failFast = *f.FailFast
		}
	}
	return par, failFast
}

// scheduleLoop moves the running iterations of an active loop, starts new ones up to its
// parallelism, and ends the loop when no more will run.
func (m *machine) scheduleLoop(ctx context.Context, run *Run, g *graph, n *node, now time.Time, inflight func(string) bool, t *transition) {
	for _, it := range n.iters {
		if !it.finished() {
			m.schedule(ctx, run, g, []*node{it}, now, inflight, t)
		}
	}
	par, failFast := loopSettings(n.spec)
	st := &run.Object.Status
	always := strings.TrimSpace(n.spec.If) == "always"
	for len(n.iters) < len(n.loop.Items) && (!st.Terminated || always) && (!run.suspended() || st.Terminated) {
		running, failed := 0, false
		for _, it := range n.iters {
			running += btoi(!it.finished())
			failed = failed || it.status.Phase == v1alpha1.StepFailed
		}
		if running >= par || (failFast && failed) {
			break
		}
		it := m.newIteration(run, g, n)
		if cond := strings.TrimSpace(n.spec.If); cond != "" && cond != "always" {
			verdict, message := m.evalIf(ctx, run, g, it, cond)
			switch verdict {
			case gateSkip:
				skip(it, message, t)
				continue
			case gateFail:
				m.fail(run, it, v1alpha1.ReasonExecute, message, now, t)
				continue
			}
		}
		m.start(run, it, now, t)
		if it.isGroup {
			m.enterGroup(ctx, run, g, it, now, inflight, t)
		} else {
			t.launch = append(t.launch, it)
		}
	}
	m.finishLoop(run, n, now, t)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// newIteration records the next iteration of loop n and makes its nodes, pending.
func (m *machine) newIteration(run *Run, g *graph, n *node) *node {
	i := len(n.loop.Iterations)
	rec := &Iteration{Status: v1alpha1.StepStatus{ID: newID(), Name: iterationName(n.name, i), Type: n.spec.Type, Phase: v1alpha1.StepPending}}
	if i < len(n.loop.Items) {
		// Redacted whole before it is cut, so that no part of a sensitive item shows.
		rec.Item = itemLabel(run.Redactor().JSON(n.loop.Items[i]))
	}
	for _, s := range n.subs {
		rec.SubSteps = append(rec.SubSteps, v1alpha1.StepStatus{ID: newID(), Name: iterationName(s.name, i), Type: s.spec.Type, Phase: v1alpha1.StepPending})
	}
	n.loop.Iterations = append(n.loop.Iterations, rec)
	return g.addIteration(n, i)
}

// finishLoop ends a loop when every iteration finished, or when a failure stopped it (failFast)
// and the iterations under way finished. It fails when an iteration failed, is skipped when
// every iteration was, and succeeds otherwise, its outputs gathering the iterations' values.
func (m *machine) finishLoop(run *Run, n *node, now time.Time, t *transition) {
	if !n.active() {
		return
	}
	_, failFast := loopSettings(n.spec)
	var failed []*node
	skipped := 0
	for _, it := range n.iters {
		switch it.status.Phase {
		case v1alpha1.StepFailed:
			failed = append(failed, it)
		case v1alpha1.StepSkipped:
			skipped++
		default:
			if !it.finished() {
				return
			}
		}
	}
	notStarted := len(n.loop.Items) - len(n.iters)
	if notStarted > 0 && (len(failed) == 0 || !failFast) {
		return
	}
	t.changed = true
	n.status.LastExecuteTime = metav1.NewTime(now)
	switch {
	case len(failed) > 0:
		msg := fmt.Sprintf("iteration %s failed", failed[0].name)
		if m := failed[0].status.Message; m != "" {
			msg += ": " + m
		}
		if len(failed) > 1 {
			msg += fmt.Sprintf(" (and %d more)", len(failed)-1)
		}
		if notStarted > 0 {
			msg += fmt.Sprintf("; %d not started (failFast)", notStarted)
		}
		n.status.Phase, n.status.Reason, n.status.Message = v1alpha1.StepFailed, v1alpha1.ReasonExecute, msg
	case len(n.iters) > 0 && skipped == len(n.iters):
		n.status.Phase, n.status.Reason, n.status.Message = v1alpha1.StepSkipped, v1alpha1.ReasonSkip, "every iteration was skipped"
	default:
		n.status.Phase, n.status.Reason, n.status.Message = v1alpha1.StepSucceeded, "", ""
		for _, name := range loopOutputs(n) {
			list := make([]json.RawMessage, len(n.iters))
			for i, it := range n.iters {
				list[i] = it.it.rec.Outputs[name]
				if list[i] == nil {
					list[i] = json.RawMessage("null")
				}
			}
			b, _ := json.Marshal(list)
			run.setVar(name, b)
		}
	}
	sumUpTemplates(n)
	summarizeLoop(n)
}

// loopOutputs are the names of the variables a loop outputs: its step's outputs, or its
// sub-steps'.
func loopOutputs(n *node) []string {
	var names []string
	for _, s := range append([]*node{n}, n.subs...) {
		for _, o := range s.spec.Outputs {
			if !slices.Contains(names, o.Name) {
				names = append(names, o.Name)
			}
		}
	}
	return names
}

// sumUpTemplates sets the status of a looping group's sub-steps from their instances once the
// loop ended: failed when one failed, succeeded when one succeeded, skipped otherwise.
func sumUpTemplates(n *node) {
	for j, s := range n.subs {
		if s.finished() {
			continue
		}
		var failed, succeeded *node
		for _, it := range n.iters {
			inst := it.subs[j]
			if inst.status.Phase == v1alpha1.StepFailed && failed == nil {
				failed = inst
			}
			if inst.status.Phase == v1alpha1.StepSucceeded && succeeded == nil {
				succeeded = inst
			}
			if s.status.FirstExecuteTime.IsZero() || (!inst.status.FirstExecuteTime.IsZero() && inst.status.FirstExecuteTime.Before(&s.status.FirstExecuteTime)) {
				s.status.FirstExecuteTime = inst.status.FirstExecuteTime
			}
			if s.status.LastExecuteTime.Before(&inst.status.LastExecuteTime) {
				s.status.LastExecuteTime = inst.status.LastExecuteTime
			}
		}
		switch {
		case failed != nil:
			s.status.Phase, s.status.Reason = v1alpha1.StepFailed, failed.status.Reason
			s.status.Message = fmt.Sprintf("%s failed: %s", failed.name, failed.status.Message)
		case succeeded != nil:
			s.status.Phase, s.status.Reason, s.status.Message = v1alpha1.StepSucceeded, "", ""
		default:
			s.status.Phase, s.status.Reason = v1alpha1.StepSkipped, v1alpha1.ReasonSkip
			s.status.Message = "no iteration ran it"
		}
	}
}

// summarizeLoop writes a loop's iterations into its WorkflowRun status: counts by phase, and
// at most statusEntries of them, the failed ones first and then the most recent.
func summarizeLoop(n *node) {
	if n.loop == nil {
		return
	}
	sum := &v1alpha1.IterationsStatus{Total: len(n.loop.Items)}
	var failed, others []int
	for i, it := range n.iters {
		switch it.status.Phase {
		case v1alpha1.StepSucceeded:
			sum.Succeeded++
		case v1alpha1.StepFailed:
			sum.Failed++
		case v1alpha1.StepSkipped:
			sum.Skipped++
		default:
			sum.Running++
		}
		if it.status.Phase == v1alpha1.StepFailed {
			failed = append(failed, i)
		} else {
			others = append(others, i)
		}
	}
	firstFailed := min(len(failed), statusEntries/2)
	keep := slices.Clone(failed[:firstFailed])
	keep = append(keep, others[max(0, len(others)-(statusEntries-len(keep))):]...)
	if room := statusEntries - len(keep); room > 0 {
		// Fewer other iterations than room: more of the failed ones.
		more := failed[firstFailed:]
		keep = append(keep, more[:min(len(more), room)]...)
	}
	slices.Sort(keep)
	for _, i := range keep {
		it := n.iters[i]
		e := v1alpha1.IterationStatus{Index: i, IterationStepStatus: iterationStep(it.status)}
		if i < len(n.loop.Iterations) {
			e.Item = n.loop.Iterations[i].Item
		}
		for _, s := range it.subs {
			e.SubSteps = append(e.SubSteps, iterationStep(s.status))
		}
		sum.Entries = append(sum.Entries, e)
	}
	n.status.Iterations = sum
}

// maxItemLabel is the longest itemLabel, in bytes.
const maxItemLabel = 64

// itemLabel is how a person names an iteration's item: a string, number or boolean as it is;
// an object by its name field (name, or metadata.name), else by its scalar fields in order as
// key=value; anything else as compact JSON; cut at maxItemLabel bytes.
func itemLabel(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return ""
	}
	var label string
	switch x := v.(type) {
	case string:
		label = x
	case float64, bool:
		label = string(bytes.TrimSpace(raw))
	case map[string]any:
		if name, ok := x["name"].(string); ok {
			label = name
		} else if meta, ok := x["metadata"].(map[string]any); ok && meta["name"] != nil {
			label = fmt.Sprint(meta["name"])
		} else {
			label = fieldsLabel(raw)
		}
	default:
		var buf bytes.Buffer
		if json.Compact(&buf, raw) == nil {
			label = buf.String()
		}
	}
	if len(label) > maxItemLabel {
		cut := maxItemLabel - len("…")
		for cut > 0 && !utf8.RuneStart(label[cut]) {
			cut--
		}
		label = label[:cut] + "…"
	}
	return label
}

// fieldsLabel writes an object's scalar fields, in the order the item holds them (by key once
// decoded from YAML), as key=value joined by commas (a matrix combination: env=prod,
// region=us-east-1).
func fieldsLabel(raw json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return ""
	}
	var parts []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			break
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			break
		}
		var scalar any
		if json.Unmarshal(val, &scalar) != nil {
			continue
		}
		switch s := scalar.(type) {
		case string:
			parts = append(parts, fmt.Sprintf("%v=%s", k, s))
		case float64, bool:
			parts = append(parts, fmt.Sprintf("%v=%s", k, bytes.TrimSpace(val)))
		}
	}
	return strings.Join(parts, ", ")
}

func iterationStep(s *v1alpha1.StepStatus) v1alpha1.IterationStepStatus {
	return v1alpha1.IterationStepStatus{ID: s.ID, Name: s.Name, Phase: s.Phase, Message: s.Message, Reason: s.Reason,
		FirstExecuteTime: s.FirstExecuteTime, LastExecuteTime: s.LastExecuteTime, ChildRun: s.ChildRun}
}

// value is an iteration variable: item, index, or item.<path> (a field of the item).
func (it *iteration) value(name string) (any, bool) {
	if name == v1alpha1.VarIndex {
		return it.index, true
	}
	var v any
	if err := json.Unmarshal(it.item, &v); err != nil {
		return nil, false
	}
	path, _ := strings.CutPrefix(name, v1alpha1.VarItem)
	return lookupPath(v, strings.TrimPrefix(path, "."))
}

// lookupPath follows a dotted path (fields, or list indexes as numbers) into a JSON value.
func lookupPath(v any, path string) (any, bool) {
	if path == "" {
		return v, true
	}
	for p := range strings.SplitSeq(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[p]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}
