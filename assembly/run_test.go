package assembly_test

import (
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/assembly"
)

// scriptRun builds a file with a script, in a step-group, and passes it to the next step.
const scriptRun = `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: script, namespace: default}
spec:
  workflowSpec:
    steps:
    - name: group
      type: step-group
      subSteps:
      - name: build
        type: run
        properties: {script: "printf 'v9\n' > $STEPFLOW_OUTPUTS/version", outputs: [version]}
        outputs: [{name: version, valueFrom: outputs.version}]
    - name: show
      type: print-message-in-status
      inputs: [{from: version, parameterKey: message}]
      properties: {message: ""}
`

// Without AllowLocalRun, the engine's check before a run starts refuses a run step, wherever it
// is, naming the flag: nothing runs.
func TestLocalRunOffFailsTheRunBeforeItStarts(t *testing.T) {
	_, run := start(t, assembly.Config{}, scriptRun, false)
	st := run.Object.Status
	if st.Phase != v1alpha1.RunFailed || !strings.Contains(st.Message, "steps[0].subSteps[0].type") || !strings.Contains(st.Message, "--allow-local-run") {
		t.Fatalf("phase %s, message %q: want failed at the run step's type, naming --allow-local-run", st.Phase, st.Message)
	}
	// A run checked elsewhere (by a front end that allowed it) still runs nothing here: the
	// action refuses.
	_, run = start(t, assembly.Config{}, scriptRun, true)
	found := false
	for _, s := range run.Object.Status.Steps {
		for _, sub := range s.SubStepsStatus {
			if sub.Name != "build" {
				continue
			}
			found = true
			if sub.Phase != v1alpha1.StepFailed || !strings.Contains(sub.Message, "--allow-local-run") {
				t.Errorf("build: %s %q: want failed naming --allow-local-run", sub.Phase, sub.Message)
			}
		}
	}
	if !found {
		t.Errorf("no status of the build step: %+v", run.Object.Status.Steps)
	}
}

// With AllowLocalRun, the script runs in the sandbox and the file it wrote is the next step's
// input.
func TestLocalRunPassesItsOutputOn(t *testing.T) {
	_, run := start(t, assembly.Config{Providers: assembly.Providers{AllowLocalRun: true}}, scriptRun, false)
	st := run.Object.Status
	if st.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("phase %s, message %q", st.Phase, st.Message)
	}
	for _, s := range st.Steps {
		if s.Name == "show" && s.Message != "v9" {
			t.Errorf("show's message %q, want the script's output v9", s.Message)
		}
	}
}
