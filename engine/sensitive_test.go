package engine_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// stored returns what a store holds of a run that people read: its status as JSON, and its
// log lines.
func (h *harness) stored(key engine.Key) (string, []engine.LogEntry) {
	h.t.Helper()
	st, err := json.Marshal(h.saved(key).Object.Status)
	if err != nil {
		h.t.Fatal(err)
	}
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	return string(st), slices.Clone(h.store.logs[key])
}

// A value a step marks sensitive is saved redacted in the status, also in the messages of
// earlier steps written before it was known, and in the log lines from then on, while the
// variables keep it for later steps. A log line saved before is redacted when it is shown.
func TestSensitiveValuesAreRedactedInStatusAndLogs(t *testing.T) {
	h := newHarness(t)
	key := h.start(`
metadata: {name: leaky}
spec:
  workflowSpec:
    steps:
    - {name: early, type: leak, properties: {secret: tok-7a7a7a7a}}
    - {name: read, type: leak, properties: {secret: tok-7a7a7a7a, mark: true}, outputs: [{name: token, valueFrom: x}]}
    - {name: use, type: leak, inputs: [{from: token, parameterKey: secret}], outputs: [{name: echoed, valueFrom: x}]}
    - {name: refuse, type: leak, properties: {secret: tok-7a7a7a7a, fail: true}}
`)
	run := h.waitSettled(key)
	if run.Object.Status.Phase != v1alpha1.RunFailed {
		t.Fatalf("phase %s: %s", run.Object.Status.Phase, dump(run))
	}
	status, logs := h.stored(key)
	if strings.Contains(status, "tok-7a7a7a7a") {
		t.Errorf("the stored status shows the secret:\n%s", status)
	}
	saved := h.saved(key)
	for _, l := range logs {
		text := l.Message + string(l.Data)
		if l.Step != "early" && strings.Contains(text, "tok-7a7a7a7a") {
			t.Errorf("log line of %s saved with the secret: %s", l.Step, text)
		}
		engine.RedactLog(saved.Redactor(), &l)
		if text := l.Message + string(l.Data); strings.Contains(text, "tok-7a7a7a7a") {
			t.Errorf("log line of %s shown with the secret: %s", l.Step, text)
		}
	}
	if !slices.Equal(saved.Sensitive, []string{"tok-7a7a7a7a"}) {
		t.Errorf("Sensitive = %q", saved.Sensitive)
	}
	if varOf(saved, "token") != `"tok-7a7a7a7a"` || varOf(saved, "echoed") != `"tok-7a7a7a7a"` {
		t.Errorf("the variables lost the value: %s", saved.Vars)
	}
	for _, s := range saved.Object.Status.Steps {
		if !strings.Contains(s.Message, "<redacted>") {
			t.Errorf("step %s: message %q", s.Name, s.Message)
		}
	}

	// What shows a run redacts with the run's Redactor.
	if got := saved.Redactor().String("Bearer tok-7a7a7a7a"); got != "Bearer <redacted>" {
		t.Errorf("Redactor: %q", got)
	}
	if !(&engine.Run{}).Redactor().Empty() {
		t.Error("a run without sensitive values redacts something")
	}
}

// A template parameter declared sensitive is hidden from the first save on; the steps see it.
func TestSensitiveTemplateParameters(t *testing.T) {
	h := newHarness(t)
	h.template("deploy", `
parameters:
- {name: token, type: string, sensitive: true}
- {name: env, type: string, enum: [staging, prod], default: staging}
steps:
- {name: show, type: leak, outputs: [{name: shown, valueFrom: x}]}`)
	key := h.start(`
metadata: {name: with-token}
spec: {workflowRef: deploy, context: {token: tok-3c3c3c3c}}`)
	run := h.waitSettled(key)
	if run.Object.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("%s", dump(run))
	}
	if msg := run.Object.Status.Steps[0].Message; msg != "the secret is <redacted>" {
		t.Errorf("message %q", msg)
	}
	status, logs := h.stored(key)
	logText, _ := json.Marshal(logs)
	if strings.Contains(status, "tok-3c3c3c3c") || strings.Contains(string(logText), "tok-3c3c3c3c") {
		t.Errorf("stored: %s %s", status, logText)
	}
	saved := h.saved(key)
	if varOf(saved, "shown") != `"tok-3c3c3c3c"` || !strings.Contains(string(saved.Context), "tok-3c3c3c3c") {
		t.Errorf("the step did not get the value: vars %s, context %s", saved.Vars, saved.Context)
	}
	// "staging" is not sensitive, and not shorter than the minimum either: it stays.
	if slices.Contains(saved.Sensitive, "staging") || !slices.Contains(saved.Sensitive, "tok-3c3c3c3c") {
		t.Errorf("Sensitive = %q", saved.Sensitive)
	}

	// A context that does not fit fails the run with a message that would quote the value.
	h.template("strict", `
parameters:
- {name: token, type: string, sensitive: true, enum: [tok-allowed]}
steps:
- {name: show, type: leak}`)
	bad := h.start(`
metadata: {name: bad-token}
spec: {workflowRef: strict, context: {token: tok-5d5d5d5d}}`)
	run = h.waitSettled(bad)
	if st := run.Object.Status; st.Phase != v1alpha1.RunFailed || strings.Contains(st.Message, "tok-5d5d5d5d") || !strings.Contains(st.Message, "spec.context.token") {
		t.Errorf("phase %s, message %q", st.Phase, st.Message)
	}
}

// A child run hides what its parent learned (its context may hold it), and the parent hides
// what its child learned (its outputs may hold it).
func TestSensitiveValuesCrossChildRuns(t *testing.T) {
	h := newHarness(t)
	h.template("child", `
steps:
- {name: echo, type: leak, outputs: [{name: echoed, valueFrom: x}]}
- {name: learn, type: leak, properties: {secret: tok-child-1e1e, mark: true}, outputs: [{name: learned, valueFrom: x}]}`)
	key := h.start(`
metadata: {name: parent}
spec:
  workflowSpec:
    steps:
    - {name: read, type: leak, properties: {secret: tok-parent-2f2f, mark: true}, outputs: [{name: token, valueFrom: x}]}
    - name: sub
      type: workflow
      properties: {name: child}
      inputs: [{from: token, parameterKey: context.token}]
      outputs: [{name: fromChild, valueFrom: variables.learned}]
    - {name: show, type: leak, inputs: [{from: fromChild, parameterKey: secret}]}`)
	run := h.waitSettled(key)
	if run.Object.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("%s", dump(run))
	}
	child := h.saved(engine.Key{Namespace: "default", Name: "parent-sub"})
	if msg := child.Object.Status.Steps[0].Message; msg != "the secret is <redacted>" {
		t.Errorf("the child's echo: %q", msg)
	}
	if msg := run.Object.Status.Steps[2].Message; msg != "the secret is <redacted>" {
		t.Errorf("the parent's show: %q", msg)
	}
	if got := h.saved(key).Sensitive; !slices.Equal(got, []string{"tok-child-1e1e", "tok-parent-2f2f"}) {
		t.Errorf("the parent's Sensitive = %q", got)
	}
}
