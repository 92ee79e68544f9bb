package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// enterGroup moves an active step-group (or an iteration of one): a Switch group first chooses
// its case, then the sub-steps that may go do, and the group ends when they all finished.
func (m *machine) enterGroup(ctx context.Context, run *Run, g *graph, n *node, now time.Time, inflight func(string) bool, t *transition) {
	if n.subMode == v1alpha1.ModeSwitch {
		m.chooseCase(ctx, run, g, n, now, t)
	}
	m.schedule(ctx, run, g, n.subs, now, inflight, t)
	m.finishGroup(n, now, t)
}

// chooseCase decides which case of a Switch group runs, once, when every case is pending: the
// first whose `if` holds, a case without `if` being the default. The others are skipped with a
// message naming the case taken.
func (m *machine) chooseCase(ctx context.Context, run *Run, g *graph, n *node, now time.Time, t *transition) {
	for _, s := range n.subs {
		if s.status.Phase != v1alpha1.StepPending {
			return
		}
	}
	var chosen *node
	undecided := ""
	for _, s := range n.subs {
		cond := strings.TrimSpace(s.spec.If)
		if cond == "" || cond == "always" {
			chosen = s
			break
		}
		verdict, message := m.evalIf(ctx, run, g, s, cond)
		if verdict == gateFail {
			m.fail(run, s, v1alpha1.ReasonExecute, message, now, t)
			undecided = s.name
			break
		}
		if verdict == gateRun {
			chosen = s
			break
		}
	}
	for _, s := range n.subs {
		if s == chosen || s.finished() {
			continue
		}
		switch {
		case chosen != nil:
			skip(s, fmt.Sprintf("case %s was taken", chosen.spec.Name), t)
		case undecided != "":
			skip(s, fmt.Sprintf("no case was taken: the if of case %s could not be decided", undecided), t)
		default:
			skip(s, "no case matched", t)
		}
	}
}

// finishGroup ends a group whose sub-steps have all finished.
func (m *machine) finishGroup(n *node, now time.Time, t *transition) {
	if !n.active() {
		return
	}
	failed := ""
	for _, s := range n.subs {
		if !s.finished() {
			return
		}
		if s.status.Phase == v1alpha1.StepFailed && failed == "" {
			failed = s.name
		}
	}
	t.changed = true
	n.status.LastExecuteTime = metav1.NewTime(now)
	if failed != "" {
		n.status.Phase = v1alpha1.StepFailed
		n.status.Reason = v1alpha1.ReasonExecute
		n.status.Message = fmt.Sprintf("sub-step %s failed", failed)
		return
	}
	n.status.Phase = v1alpha1.StepSucceeded
	n.status.Reason = ""
}
