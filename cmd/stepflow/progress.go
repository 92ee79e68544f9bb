package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// progress shows runs as they move: on a terminal, a tree of steps redrawn in place; otherwise one
// line per step phase change, which reads well in CI logs.
type progress struct {
	w   io.Writer
	tty bool
	now func() time.Time
	// width is the terminal's width in columns (0: unknown, taken as 80), asked at each
	// redraw so that a resized window is drawn to its new width.
	width func() int

	mu    sync.Mutex
	order []engine.Key
	runs  map[engine.Key]v1alpha1.WorkflowRunStatus
	// seen is the last phase printed per run/step, in line mode.
	seen  map[string]string
	drawn int
}

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty, now: time.Now, runs: map[engine.Key]v1alpha1.WorkflowRunStatus{}, seen: map[string]string{}}
}

// RunChanged implements engine.Observer.
func (p *progress) RunChanged(run *engine.Run) {
	key := run.Key()
	var st v1alpha1.WorkflowRunStatus
	run.Object.Status.DeepCopyInto(&st)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.runs[key]; !ok {
		p.order = append(p.order, key)
	}
	p.runs[key] = st
	if p.tty {
		p.redraw()
		return
	}
	p.lines(key, st)
}

// lines prints what changed since the last call, in line mode.
func (p *progress) lines(key engine.Key, st v1alpha1.WorkflowRunStatus) {
	step := func(s v1alpha1.StepStatus, indent string) {
		// The failed iterations of a loop are told as they are seen; the others are counted.
		if it := s.Iterations; it != nil {
			for _, e := range it.Entries {
				id := key.String() + "/" + e.Name
				if e.Phase != v1alpha1.StepFailed || p.seen[id] != "" {
					continue
				}
				p.seen[id] = string(e.Phase)
				fmt.Fprintf(p.w, "%s %s  iteration %s %s%s\n", key.Name, indent, e.Name, phaseWord(iterationStep(e.IterationStepStatus)),
					detail(iterationStep(e.IterationStepStatus), p.now()))
			}
		}
		id := key.String() + "/" + s.Name
		state := string(s.Phase) + "|" + s.Reason + "|" + s.Message
		// A pending step is told only with a message: why it waits to start (a step's
		// concurrency key, with its place in line).
		if p.seen[id] == state || (s.Phase == v1alpha1.StepPending && s.Message == "") || s.Phase == "" {
			return
		}
		p.seen[id] = state
		fmt.Fprintf(p.w, "%s %sstep %s %s%s\n", key.Name, indent, s.Name, phaseWord(s), detail(s, p.now()))
	}
	for _, s := range st.Steps {
		// A group that finished is told after its sub-steps, which finished first.
		if !s.Phase.Finished() {
			step(s.StepStatus, "")
		}
		for _, ss := range s.SubStepsStatus {
			step(ss, "  ")
		}
		if s.Phase.Finished() {
			step(s.StepStatus, "")
		}
	}
	id := key.String()
	if p.seen[id] != string(st.Phase) && st.Finished {
		p.seen[id] = string(st.Phase)
		fmt.Fprintf(p.w, "%s %s%s\n", key.Name, st.Phase, runDetail(st, p.now()))
	}
}

// Tick redraws the tree so running durations advance; a no-op in line mode.
func (p *progress) Tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.redraw()
	}
}

func (p *progress) redraw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	n := 0
	// A line wider than the terminal would wrap onto the next row, and the next redraw, which
	// moves up one row per line, would start below the tree's top: each line is cut to fit.
	width := 80
	if p.width != nil {
		if w := p.width(); w > 0 {
			width = w
		}
	}
	line := func(format string, args ...any) {
		b.WriteString("\x1b[2K")
		b.WriteString(fit(fmt.Sprintf(format, args...), width-1))
		b.WriteByte('\n')
		n++
	}
	now := p.now()
	for _, key := range p.order {
		st := p.runs[key]
		line("%s %s%s", key.Name, st.Phase, runDetail(st, now))
		for i, s := range st.Steps {
			branch, pipe := "├─", "│ "
			if i == len(st.Steps)-1 {
				branch, pipe = "└─", "  "
			}
			line("%s %s %-20s %-11s%s", branch, icon(s.Phase), s.Name, s.Phase, detail(s.StepStatus, now))
			for _, e := range shownIterations(s.StepStatus) {
				line("%s   %s %-17s %-11s%s", pipe, icon(e.Phase), e.Name, e.Phase, detail(iterationStep(e), now))
			}
			for j, ss := range s.SubStepsStatus {
				sub := "├─"
				if j == len(s.SubStepsStatus)-1 {
					sub = "└─"
				}
				line("%s %s %s %-17s %-11s%s", pipe, sub, icon(ss.Phase), ss.Name, ss.Phase, detail(ss, now))
			}
		}
	}
	// Clear lines left over from a taller drawing.
	for i := n; i < p.drawn; i++ {
		b.WriteString("\x1b[2K\n")
	}
	if p.drawn > n {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn-n)
	}
	p.drawn = n
	// Progress is shown as well as it can be: a terminal that cannot be drawn on stops no run.
	_, _ = io.WriteString(p.w, b.String())
}

// fit cuts s to at most width characters, ending it with "…" when it was cut.
func fit(s string, width int) string {
	if width < 1 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

func icon(phase v1alpha1.WorkflowStepPhase) string {
	switch phase {
	case v1alpha1.StepSucceeded:
		return "✓"
	case v1alpha1.StepFailed:
		return "✗"
	case v1alpha1.StepSkipped:
		return "-"
	case v1alpha1.StepRunning:
		return "▸"
	case v1alpha1.StepSuspending:
		return "⏸"
	}
	return "·"
}

func phaseWord(s v1alpha1.StepStatus) string {
	if s.Reason != "" && s.Phase != v1alpha1.StepSucceeded {
		return string(s.Phase) + " (" + s.Reason + ")"
	}
	return string(s.Phase)
}

// detail renders a step's duration and message.
func detail(s v1alpha1.StepStatus, now time.Time) string {
	var parts []string
	if !s.FirstExecuteTime.IsZero() {
		end := now
		if s.Phase.Finished() {
			end = s.LastExecuteTime.Time
		}
		parts = append(parts, roundDuration(end.Sub(s.FirstExecuteTime.Time)))
	}
	if it := s.Iterations; it != nil {
		parts = append(parts, iterationCounts(it))
	}
	if s.ChildRun != "" {
		parts = append(parts, "run "+s.ChildRun)
	}
	if s.Message != "" {
		parts = append(parts, oneLine(s.Message))
	}
	if len(parts) == 0 {
		return ""
	}
	return "  " + strings.Join(parts, "  ")
}

func runDetail(st v1alpha1.WorkflowRunStatus, now time.Time) string {
	out := ""
	if !st.StartTime.IsZero() {
		end := now
		if st.Finished {
			end = st.EndTime.Time
		}
		out = " in " + roundDuration(end.Sub(st.StartTime.Time))
	}
	if st.Message != "" {
		out += ": " + oneLine(st.Message)
	}
	return out
}

func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ⏎ ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// iterationCounts renders a loop's iterations: "3/10 succeeded, 1 failed, 2 running".
func iterationCounts(it *v1alpha1.IterationsStatus) string {
	var out strings.Builder
	fmt.Fprintf(&out, "%d/%d succeeded", it.Succeeded, it.Total)
	for _, c := range []struct {
		n    int
		word string
	}{{it.Failed, "failed"}, {it.Skipped, "skipped"}, {it.Running, "running"}} {
		if c.n > 0 {
			fmt.Fprintf(&out, ", %d %s", c.n, c.word)
		}
	}
	return out.String()
}

// shownIterations are the iterations of a loop the terminal tree shows under it: the failed and
// running ones, at most five.
func shownIterations(s v1alpha1.StepStatus) []v1alpha1.IterationStepStatus {
	if s.Iterations == nil {
		return nil
	}
	var out []v1alpha1.IterationStepStatus
	for _, e := range s.Iterations.Entries {
		if len(out) < 5 && (e.Phase == v1alpha1.StepFailed || !e.Phase.Finished()) {
			out = append(out, e.IterationStepStatus)
		}
	}
	return out
}

// iterationStep is an iteration's entry as a step status, to render it as one.
func iterationStep(e v1alpha1.IterationStepStatus) v1alpha1.StepStatus {
	return v1alpha1.StepStatus{ID: e.ID, Name: e.Name, Phase: e.Phase, Message: e.Message, Reason: e.Reason,
		FirstExecuteTime: e.FirstExecuteTime, LastExecuteTime: e.LastExecuteTime, ChildRun: e.ChildRun}
}
