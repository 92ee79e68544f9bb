// Package storetest is the test suite every engine.Store backend runs, so that the engine
// can rely on the same behaviour from each: a run survives a save and load whole, a save is
// a compare-and-swap on the run's version, and the logs a save carries are appended with it
// or not at all.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// LogReader reads a run's log back: every step's entries when step is empty, else that
// step's, in the order they were saved. The suite checks logs through it when a store
// implements it, and skips those checks otherwise.
type LogReader interface {
	Logs(ctx context.Context, key engine.Key, step string) ([]engine.LogEntry, error)
}

// Run runs the suite. open returns a new, empty store for one subtest; it is called once per
// subtest and should register the store's cleanup with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) engine.Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("VersionConflict", func(t *testing.T) { testVersionConflict(t, open(t)) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, open(t)) })
	t.Run("LogsAtomicWithSave", func(t *testing.T) { testLogs(t, open(t)) })
	t.Run("ConcurrentDistinctRuns", func(t *testing.T) { testConcurrentDistinct(t, open(t)) })
	t.Run("ConcurrentSameRun", func(t *testing.T) { testConcurrentSame(t, open(t)) })
	t.Run("SensitiveValues", func(t *testing.T) { testSensitive(t, open(t)) })
	t.Run("LargeValues", func(t *testing.T) { testLargeValues(t, open(t)) })
	t.Run("LargeLoopValues", func(t *testing.T) { testLargeLoopValues(t, open(t)) })
}

// Secret is the sensitive value of SensitiveRun.
const Secret = "tok-storetest-8d7c6b5a"

// SensitiveRun is NewRun with a sensitive value, which its context, a variable and a memo
// hold, as a run that read a Secret does.
func SensitiveRun(namespace, name string) *engine.Run {
	run := NewRun(namespace, name)
	run.Sensitive = []string{Secret}
	run.Context = json.RawMessage(`{"token":"` + Secret + `"}`)
	run.Vars["token"] = json.RawMessage(`"` + Secret + `"`)
	run.Steps["notify"].Memo["read"] = json.RawMessage(`{"data":"` + Secret + `"}`)
	return run
}

// testSensitive: a run's sensitive values survive saves and loads with it, and so do the
// variables, memos and context that hold them, through conflicts too.
func testSensitive(t *testing.T, st engine.Store) {
	run := SensitiveRun("sensitive", "run")
	mustSave(t, st, run, nil)
	got := mustLoad(t, st, run.Key())
	if a, b := canonicalRun(t, run), canonicalRun(t, got); !bytes.Equal(a, b) {
		t.Errorf("loaded run differs from the saved one:\nsaved:  %s\nloaded: %s", a, b)
	}
	a, b := mustLoad(t, st, run.Key()), mustLoad(t, st, run.Key())
	a.Vars["more"] = json.RawMessage(`"from a"`)
	mustSave(t, st, a, []engine.LogEntry{{Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Step: "fetch", Message: "one"}})
	b.Vars["more"] = json.RawMessage(`"from b"`)
	if err := st.Save(t.Context(), b, nil); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("Save of a stale run: err = %v, want ErrConflict", err)
	}
	got = mustLoad(t, st, run.Key())
	if len(got.Sensitive) != 1 || got.Sensitive[0] != Secret {
		t.Errorf("Sensitive = %q, want [%s]", got.Sensitive, Secret)
	}
	assertJSON(t, "variable token", got.Vars["token"], `"`+Secret+`"`)
	assertJSON(t, "variable more", got.Vars["more"], `"from a"`)
	assertJSON(t, "memo read", got.Steps["notify"].Memo["read"], `{"data":"`+Secret+`"}`)
	assertJSON(t, "context", got.Context, `{"token":"`+Secret+`"}`)
	got.Object.Status.Phase = v1alpha1.RunSucceeded
	mustSave(t, st, got, nil)
	if again := mustLoad(t, st, run.Key()); again.Object.Status.Phase != v1alpha1.RunSucceeded || len(again.Sensitive) != 1 {
		t.Errorf("after a third save: phase %s, Sensitive %q", again.Object.Status.Phase, again.Sensitive)
	}
}

// NewRun returns a run with every part the engine stores filled in: a WorkflowRun with inline
// steps (a step-group among them), properties, inputs and outputs, a status with timestamps,
// the resolved spec, variables, and step records with a memo. Backends use it in their own
// tests too.
func NewRun(namespace, name string) *engine.Run {
	start := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	steps := []v1alpha1.WorkflowStep{
		{WorkflowStepBase: v1alpha1.WorkflowStepBase{
			Name:       "fetch",
			Type:       "request",
			Properties: &runtime.RawExtension{Raw: []byte(`{"url":"https://example.com","headers":{"a":"b"}}`)},
			Outputs:    v1alpha1.StepOutputs{{Name: "body", ValueFrom: "response.body"}},
			Timeout:    "1m",
		}},
		{
			WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "group", Type: "step-group", DependsOn: []string{"fetch"}},
			SubSteps: []v1alpha1.WorkflowStepBase{
				{Name: "notify", Type: "notification", Inputs: v1alpha1.StepInputs{{From: "body", ParameterKey: "message"}}},
				{Name: "wait", Type: "suspend", If: "always"},
			},
			Mode: v1alpha1.ModeStepByStep,
		},
	}
	status := v1alpha1.WorkflowRunStatus{
		Mode:      v1alpha1.WorkflowExecuteMode{Steps: v1alpha1.ModeStepByStep, SubSteps: v1alpha1.ModeDAG},
		Phase:     v1alpha1.RunExecuting,
		Message:   "waiting for notify",
		StartTime: metav1.NewTime(start),
		Steps: []v1alpha1.WorkflowStepStatus{
			{StepStatus: v1alpha1.StepStatus{ID: "id-fetch", Name: "fetch", Type: "request", Phase: v1alpha1.StepSucceeded,
				FirstExecuteTime: metav1.NewTime(start), LastExecuteTime: metav1.NewTime(start.Add(2 * time.Second))}},
			{
				StepStatus: v1alpha1.StepStatus{ID: "id-group", Name: "group", Type: "step-group", Phase: v1alpha1.StepRunning,
					FirstExecuteTime: metav1.NewTime(start.Add(3 * time.Second))},
				SubStepsStatus: []v1alpha1.StepStatus{
					{ID: "id-notify", Name: "notify", Type: "notification", Phase: v1alpha1.StepRunning, Reason: "Wait", Message: "retrying"},
				},
			},
		},
	}
	return &engine.Run{
		Object: &v1alpha1.WorkflowRun{
			TypeMeta: metav1.TypeMeta{APIVersion: "core.oam.dev/v1alpha1", Kind: "WorkflowRun"},
			ObjectMeta: metav1.ObjectMeta{
				Namespace: namespace, Name: name,
				Labels:            map[string]string{"team": "platform"},
				CreationTimestamp: metav1.NewTime(start.Add(-time.Minute)),
			},
			Spec: v1alpha1.WorkflowRunSpec{
				Context:      &runtime.RawExtension{Raw: []byte(`{"env":"prod","replicas":3}`)},
				WorkflowSpec: &v1alpha1.WorkflowSpec{Steps: steps},
			},
			Status: status,
		},
		Spec:  &v1alpha1.WorkflowSpec{Steps: steps},
		Epoch: 2,
		Vars:  map[string]json.RawMessage{"body": json.RawMessage(`{"items":[1,2,3],"ok":true}`)},
		Steps: map[string]*engine.StepRecord{
			"fetch": {Attempt: 1, Tries: 1},
			"notify": {
				Attempt:  1,
				Tries:    2,
				Retries:  2,
				Waits:    3,
				NextTime: time.Date(2025, 3, 14, 15, 10, 0, 123456789, time.UTC),
				Memo:     map[string]json.RawMessage{"send": json.RawMessage(`{"id":"msg-1"}`)},
			},
			"wait": {Suspended: true, Resumed: true},
		},
		ManualSuspend: true,
	}
}

func testRoundTrip(t *testing.T, st engine.Store) {
	run := NewRun("round", "trip")
	mustSave(t, st, run, nil)
	if run.Version == 0 {
		t.Fatal("Save of a new run left Version 0; want the stored version")
	}
	got := mustLoad(t, st, run.Key())
	if got.Version != run.Version {
		t.Errorf("loaded Version %d, Save set %d", got.Version, run.Version)
	}
	if a, b := canonicalRun(t, run), canonicalRun(t, got); !bytes.Equal(a, b) {
		t.Errorf("loaded run differs from the saved one:\nsaved:  %s\nloaded: %s", a, b)
	}

	// The parts the engine relies on, checked one by one for a readable failure.
	st0, st1 := run.Object.Status, got.Object.Status
	if !st1.StartTime.Equal(&st0.StartTime) {
		t.Errorf("status.startTime = %v, want %v", st1.StartTime, st0.StartTime)
	}
	if len(st1.Steps) != 2 || len(st1.Steps[1].SubStepsStatus) != 1 || st1.Steps[1].SubStepsStatus[0].Message != "retrying" {
		t.Errorf("status.steps = %+v, want the two steps and the group's sub-step", st1.Steps)
	}
	if !st1.Steps[0].LastExecuteTime.Equal(&st0.Steps[0].LastExecuteTime) {
		t.Errorf("status.steps[0].lastExecuteTime = %v, want %v", st1.Steps[0].LastExecuteTime, st0.Steps[0].LastExecuteTime)
	}
	rec := got.Steps["notify"]
	if rec == nil {
		t.Fatalf("step record notify missing; records: %v", got.Steps)
	}
	if want := run.Steps["notify"].NextTime; !rec.NextTime.Equal(want) {
		t.Errorf("notify.NextTime = %v, want %v (nanoseconds included)", rec.NextTime, want)
	}
	if rec.Attempt != 1 || rec.Tries != 2 || rec.Retries != 2 || rec.Waits != 3 {
		t.Errorf("notify record = %+v, want attempt 1, tries 2, retries 2, waits 3", rec)
	}
	assertJSON(t, "memo of notify", rec.Memo["send"], `{"id":"msg-1"}`)
	assertJSON(t, "variable body", got.Vars["body"], `{"items":[1,2,3],"ok":true}`)
	if w := got.Steps["wait"]; w == nil || !w.Suspended || !w.Resumed {
		t.Errorf("wait record = %+v, want suspended and resumed", w)
	}
	if got.Spec == nil || len(got.Spec.Steps) != 2 || got.Spec.Steps[1].SubSteps[1].If != "always" {
		t.Errorf("resolved spec = %+v, want the two steps with the group's sub-steps", got.Spec)
	}
	if got.Epoch != 2 || !got.ManualSuspend {
		t.Errorf("epoch %d, manualSuspend %v; want 2, true", got.Epoch, got.ManualSuspend)
	}

	// A second save of the loaded run stores its changes and moves the version on.
	got.Object.Status.Phase = v1alpha1.RunSucceeded
	got.Object.Status.EndTime = metav1.NewTime(time.Date(2025, 3, 14, 16, 0, 0, 0, time.UTC))
	delete(got.Steps, "wait")
	before := got.Version
	mustSave(t, st, got, nil)
	if got.Version == before {
		t.Errorf("Version still %d after a second save", before)
	}
	again := mustLoad(t, st, run.Key())
	if again.Object.Status.Phase != v1alpha1.RunSucceeded || again.Object.Status.EndTime.IsZero() || again.Steps["wait"] != nil {
		t.Errorf("after the second save: phase %q, endTime %v, wait record %v; want succeeded, set, gone",
			again.Object.Status.Phase, again.Object.Status.EndTime, again.Steps["wait"])
	}
	if again.Version != got.Version {
		t.Errorf("loaded Version %d, Save set %d", again.Version, got.Version)
	}
}

func testVersionConflict(t *testing.T, st engine.Store) {
	ctx := t.Context()
	run := NewRun("cas", "run")
	mustSave(t, st, run, nil)
	first := run.Version

	a, b := mustLoad(t, st, run.Key()), mustLoad(t, st, run.Key())
	a.Object.Status.Message = "from a"
	mustSave(t, st, a, nil)
	if a.Version <= first {
		t.Errorf("Version went from %d to %d; want it to grow", first, a.Version)
	}

	b.Object.Status.Message = "from b"
	err := st.Save(ctx, b, nil)
	if !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("Save of a run loaded before another save: err = %v, want ErrConflict", err)
	}
	if b.Version != first {
		t.Errorf("a failed Save changed Version from %d to %d", first, b.Version)
	}
	if got := mustLoad(t, st, run.Key()); got.Object.Status.Message != "from a" || got.Version != a.Version {
		t.Errorf("stored message %q at version %d; want the first save's %q at %d", got.Object.Status.Message, got.Version, "from a", a.Version)
	}

	// Version 0 means "must not exist": saving a new run under a stored name conflicts.
	if err := st.Save(ctx, NewRun("cas", "run"), nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("Save with Version 0 of a stored run: err = %v, want ErrConflict", err)
	}

	// Reloading and saving again succeeds.
	c := mustLoad(t, st, run.Key())
	c.Object.Status.Message = "from b, again"
	mustSave(t, st, c, nil)
	if got := mustLoad(t, st, run.Key()); got.Object.Status.Message != "from b, again" {
		t.Errorf("stored message %q after a reload and save, want %q", got.Object.Status.Message, "from b, again")
	}
}

func testNotFound(t *testing.T, st engine.Store) {
	ctx := t.Context()
	key := engine.Key{Namespace: "missing", Name: "run"}
	if _, err := st.Load(ctx, key); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Load of a run never saved: err = %v, want ErrNotFound", err)
	}
	// Saving at a version the store never gave is a conflict, and stores nothing.
	run := NewRun(key.Namespace, key.Name)
	run.Version = 7
	if err := st.Save(ctx, run, nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("Save at version 7 of a run never saved: err = %v, want ErrConflict", err)
	}
	if _, err := st.Load(ctx, key); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Load after a conflicting Save: err = %v, want ErrNotFound", err)
	}
	// Another namespace's run of the same name is another run.
	mustSave(t, st, NewRun("elsewhere", key.Name), nil)
	if _, err := st.Load(ctx, key); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Load of %s after saving elsewhere/%s: err = %v, want ErrNotFound", key, key.Name, err)
	}
}

func testLogs(t *testing.T, st engine.Store) {
	ctx := t.Context()
	lr, ok := st.(LogReader)
	if !ok {
		t.Skip("the store does not read logs back")
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 678000000, time.UTC)
	entry := func(step, msg string) engine.LogEntry {
		at = at.Add(time.Second)
		return engine.LogEntry{Time: at, Step: step, Level: 1, Action: "http.#Do", Duration: 1500 * time.Millisecond,
			Outcome: "ok", Message: msg, Data: json.RawMessage(`{"status":200}`)}
	}
	run := NewRun("logs", "run")
	first := []engine.LogEntry{entry("fetch", "one"), entry("fetch", "two")}
	mustSave(t, st, run, first)
	stale := mustLoad(t, st, run.Key())
	second := []engine.LogEntry{entry("notify", "three")}
	mustSave(t, st, run, second)

	// A save that fails appends none of its entries.
	if err := st.Save(ctx, stale, []engine.LogEntry{entry("fetch", "lost")}); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("stale Save: err = %v, want ErrConflict", err)
	}
	// Another run's entries stay in its own log.
	mustSave(t, st, NewRun("logs", "other"), []engine.LogEntry{entry("fetch", "other run")})

	all, err := lr.Logs(ctx, run.Key(), "")
	if err != nil {
		t.Fatal(err)
	}
	assertLogs(t, "the run's log", all, append(append([]engine.LogEntry{}, first...), second...))
	fetch, err := lr.Logs(ctx, run.Key(), "fetch")
	if err != nil {
		t.Fatal(err)
	}
	assertLogs(t, "step fetch's log", fetch, first)
	none, err := lr.Logs(ctx, engine.Key{Namespace: "logs", Name: "never"}, "")
	if err != nil || len(none) != 0 {
		t.Errorf("log of a run never saved = %v, %v; want empty, no error", none, err)
	}
}

func testConcurrentDistinct(t *testing.T, st engine.Store) {
	const runs, saves = 32, 20
	ctx := t.Context()
	errs := make(chan error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			run := NewRun("concurrent", fmt.Sprintf("run-%d", i))
			var last int64
			for j := range saves {
				run.Object.Status.Message = fmt.Sprintf("save %d", j)
				log := []engine.LogEntry{{Time: time.Unix(int64(j), 0).UTC(), Step: "fetch", Message: run.Object.Status.Message}}
				if err := st.Save(ctx, run, log); err != nil {
					errs <- fmt.Errorf("%s save %d: %w", run.Key(), j, err)
					return
				}
				if run.Version <= last {
					errs <- fmt.Errorf("%s save %d: version went from %d to %d", run.Key(), j, last, run.Version)
					return
				}
				last = run.Version
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	lr, _ := st.(LogReader)
	for i := range runs {
		key := engine.Key{Namespace: "concurrent", Name: fmt.Sprintf("run-%d", i)}
		got := mustLoad(t, st, key)
		if want := fmt.Sprintf("save %d", saves-1); got.Object.Status.Message != want {
			t.Errorf("%s: message %q, want %q", key, got.Object.Status.Message, want)
		}
		if lr == nil {
			continue
		}
		logs, err := lr.Logs(ctx, key, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(logs) != saves {
			t.Errorf("%s: %d log entries, want %d", key, len(logs), saves)
			continue
		}
		for j, e := range logs {
			if want := fmt.Sprintf("save %d", j); e.Message != want {
				t.Errorf("%s: log entry %d is %q, want %q", key, j, e.Message, want)
				break
			}
		}
	}
}

func testConcurrentSame(t *testing.T, st engine.Store) {
	const writers = 16
	ctx := t.Context()
	base := NewRun("race", "run")
	mustSave(t, st, base, nil)
	copies := make([]*engine.Run, writers)
	for i := range copies {
		copies[i] = mustLoad(t, st, base.Key())
		copies[i].Object.Status.Message = fmt.Sprintf("writer %d", i)
	}
	results := make([]error, writers)
	var wg sync.WaitGroup
	for i, r := range copies {
		wg.Go(func() {
			results[i] = st.Save(ctx, r, []engine.LogEntry{{Step: "fetch", Message: r.Object.Status.Message}})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both saved from the same version", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, engine.ErrConflict):
			t.Errorf("writer %d: err = %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer saved")
	}
	got := mustLoad(t, st, base.Key())
	if want := fmt.Sprintf("writer %d", winner); got.Object.Status.Message != want || got.Version != copies[winner].Version {
		t.Errorf("stored %q at version %d; want the winner's %q at %d", got.Object.Status.Message, got.Version, want, copies[winner].Version)
	}
	if lr, ok := st.(LogReader); ok {
		logs, err := lr.Logs(ctx, base.Key(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(logs) != 1 || logs[0].Message != fmt.Sprintf("writer %d", winner) {
			t.Errorf("log = %v; want only the winner's entry", logs)
		}
	}
}

func mustSave(t *testing.T, st engine.Store, run *engine.Run, logs []engine.LogEntry) {
	t.Helper()
	if err := st.Save(t.Context(), run, logs); err != nil {
		t.Fatalf("Save %s at version %d: %v", run.Key(), run.Version, err)
	}
}

func mustLoad(t *testing.T, st engine.Store, key engine.Key) *engine.Run {
	t.Helper()
	run, err := st.Load(t.Context(), key)
	if err != nil {
		t.Fatalf("Load %s: %v", key, err)
	}
	return run
}

// canonical is v's JSON with object keys sorted and no insignificant space, so that stores
// that reformat JSON (a database's JSON type) compare equal to the original.
// canonicalRun is canonical without the metadata a store's backend assigns itself (an API
// server sets uid, resourceVersion, generation, creationTimestamp and managedFields).
func canonicalRun(t *testing.T, run *engine.Run) []byte {
	t.Helper()
	c := *run
	obj := run.Object.DeepCopy()
	obj.UID, obj.ResourceVersion, obj.Generation, obj.ManagedFields = "", "", 0, nil
	obj.CreationTimestamp = metav1.Time{}
	c.Object = obj
	return canonical(t, &c)
}

func canonical(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(generic)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertJSON(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%s: %q is not JSON: %v", what, got, err)
		return
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func assertLogs(t *testing.T, what string, got, want []engine.LogEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s has %d entries, want %d: %+v", what, len(got), len(want), got)
		return
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.Time.Equal(w.Time) || g.Step != w.Step || g.Level != w.Level || g.Action != w.Action ||
			g.Duration != w.Duration || g.Outcome != w.Outcome || g.Message != w.Message {
			t.Errorf("%s entry %d = %+v, want %+v", what, i, g, w)
		}
		assertJSON(t, fmt.Sprintf("%s entry %d data", what, i), g.Data, string(w.Data))
	}
}
