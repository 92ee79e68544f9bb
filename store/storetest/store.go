package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// RunStore runs the suite of the store.Store methods beyond engine.Store, so that the embedded store and PostgreSQL
// list, create and delete runs alike. open returns a new, empty store for one subtest.
func RunStore(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Create", func(t *testing.T) { testCreate(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, open(t)) })
	t.Run("DeleteRacingSave", func(t *testing.T) { testDeleteRacingSave(t, open(t)) })
	t.Run("List", func(t *testing.T) { testList(t, open(t)) })
	t.Run("ListFilters", func(t *testing.T) { testListFilters(t, open(t)) })
	t.Run("ListCreated", func(t *testing.T) { testListCreated(t, open(t)) })
	t.Run("PutObjects", func(t *testing.T) { testPutObjects(t, open(t)) })
	t.Run("PutObjectsIsAllOrNothing", func(t *testing.T) { testPutObjectsIsAllOrNothing(t, open(t)) })
	t.Run("WorkflowGenerations", func(t *testing.T) { testWorkflowGenerations(t, open(t)) })
	t.Run("Workflows", func(t *testing.T) { testWorkflows(t, open(t)) })
	t.Run("WorkflowRevisions", func(t *testing.T) { testWorkflowRevisions(t, open(t)) })
	t.Run("DeleteObjects", func(t *testing.T) { testDeleteObjects(t, open(t)) })
	t.Run("Records", func(t *testing.T) { testRecords(t, open(t)) })
	t.Run("RecordPrefixes", func(t *testing.T) { testRecordPrefixes(t, open(t)) })
	t.Run("RecordVersionsAreUnique", func(t *testing.T) { testRecordVersions(t, open(t)) })
	t.Run("Retention", func(t *testing.T) { testRetention(t, open(t)) })
	t.Run("Applications", func(t *testing.T) { testApplications(t, open(t)) })
	t.Run("AppRevisions", func(t *testing.T) { testAppRevisions(t, open(t)) })
	t.Run("StepCache", func(t *testing.T) { testStepCache(t, open(t)) })
}

func testCreate(t *testing.T, st store.Store) {
	ctx := t.Context()
	run := NewRun("default", "deploy")
	run.Version = 99 // ignored
	if err := st.Create(ctx, run, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	if run.Version == 0 || run.Version == 99 {
		t.Errorf("Create set Version %d, want the stored version", run.Version)
	}
	stored, err := st.Load(ctx, run.Key())
	if err != nil || stored.Version != run.Version {
		t.Fatalf("Load after Create: version %v (%v), want %d", stored, err, run.Version)
	}
	if err := st.Save(ctx, stored, []engine.LogEntry{{Step: "fetch", Message: "old log"}}); err != nil {
		t.Fatal(err)
	}

	// Created anew, a stored run stays.
	again := NewRun("default", "deploy")
	again.Object.Status.Message = "second"
	if err := st.Create(ctx, again, store.CreateNew); !errors.Is(err, store.ErrExists) {
		t.Errorf("Create of a stored run without replacing: err = %v, want store.ErrExists", err)
	}
	if got, _ := st.Load(ctx, run.Key()); got.Object.Status.Message == "second" {
		t.Error("a refused Create changed the stored run")
	}

	// Replacing a version that is not the stored one writes nothing.
	if err := st.Create(ctx, again, run.Version); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("Create replacing version %d, stored at %d: err = %v, want ErrConflict", run.Version, stored.Version, err)
	}
	if err := st.Create(ctx, NewRun("default", "none"), stored.Version); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("Create replacing a version of a run not stored: err = %v, want ErrConflict", err)
	}
	if _, err := st.Load(ctx, engine.Key{Namespace: "default", Name: "none"}); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("a refused replacement stored a run: %v", err)
	}
	if got, _ := st.Load(ctx, run.Key()); got.Object.Status.Message == "second" || got.Version != stored.Version {
		t.Error("a refused replacement changed the stored run")
	}

	// Replacing the stored version, the run and its log are new.
	if err := st.Create(ctx, again, stored.Version); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(ctx, run.Key())
	if err != nil || got.Object.Status.Message != "second" || got.Version != again.Version {
		t.Errorf("after Create replacing: %v at %v (%v), want %q at %d", got.Object.Status.Message, got.Version, err, "second", again.Version)
	}
	if logs, err := st.Logs(ctx, run.Key(), ""); err != nil || len(logs) != 0 {
		t.Errorf("log after Create replacing = %v (%v), want empty", logs, err)
	}
	// Whoever still holds the replaced run cannot overwrite the new one.
	if err := st.Save(ctx, stored, nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("Save of the replaced run: err = %v, want ErrConflict", err)
	}

	// Creates racing to replace one version: exactly one wins.
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() {
			r := NewRun("default", "deploy")
			r.Object.Status.Message = fmt.Sprintf("racer %d", i)
			errs[i] = st.Create(ctx, r, again.Version)
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
			if got, _ := st.Load(ctx, run.Key()); got.Object.Status.Message != fmt.Sprintf("racer %d", i) {
				t.Errorf("racer %d won, the stored run is %q", i, got.Object.Status.Message)
			}
		case !errors.Is(err, engine.ErrConflict):
			t.Errorf("racer %d: %v, want ErrConflict", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d creates replacing one version succeeded, want 1", won, racers)
	}

	// ReplaceAny replaces whatever is stored.
	last := NewRun("default", "deploy")
	last.Object.Status.Message = "forced"
	if err := st.Create(ctx, last, store.ReplaceAny); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Load(ctx, run.Key()); got.Object.Status.Message != "forced" {
		t.Errorf("after ReplaceAny: %q", got.Object.Status.Message)
	}
}

func testDelete(t *testing.T, st store.Store) {
	ctx := t.Context()
	run := NewRun("default", "gone")
	run.Vars["large"] = LargeValue(0, 2*engine.BlobThreshold)
	if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: "one"}}); err != nil {
		t.Fatal(err)
	}
	stale := *run
	if err := st.Delete(ctx, run.Key()); err != nil {
		t.Fatal(err)
	}
	if sizer, ok := st.(Sizer); ok {
		if n, err := sizer.BlobBytes(ctx, run.Key()); err != nil || n != 0 {
			t.Errorf("blobs after Delete: %d bytes (%v), want none", n, err)
		}
	}
	if _, err := st.Load(ctx, run.Key()); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Load after Delete: err = %v, want ErrNotFound", err)
	}
	if logs, err := st.Logs(ctx, run.Key(), ""); err != nil || len(logs) != 0 {
		t.Errorf("log after Delete = %v (%v), want empty", logs, err)
	}
	if err := st.Delete(ctx, run.Key()); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("second Delete: err = %v, want ErrNotFound", err)
	}

	// A run created again under the name has a fresh log and never takes a version the
	// deleted one had, so a process still holding the deleted run cannot overwrite it.
	fresh := NewRun("default", "gone")
	for range 3 {
		if err := st.Save(ctx, fresh, nil); err != nil {
			t.Fatal(err)
		}
		if fresh.Version <= stale.Version {
			t.Fatalf("new run's version %d is not above the deleted run's %d", fresh.Version, stale.Version)
		}
	}
	if logs, err := st.Logs(ctx, run.Key(), ""); err != nil || len(logs) != 0 {
		t.Errorf("log of the run created again = %v (%v), want empty", logs, err)
	}
	if err := st.Save(ctx, &stale, nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("Save of the deleted run: err = %v, want ErrConflict", err)
	}
}

// A delete and a save of the same run at once: whichever goes first, no log entry of the run
// outlives it.
func testDeleteRacingSave(t *testing.T, st store.Store) {
	ctx := t.Context()
	for i := range 20 {
		run := NewRun("race", fmt.Sprintf("run-%d", i))
		if err := st.Save(ctx, run, nil); err != nil {
			t.Fatal(err)
		}
		var saveErr, deleteErr error
		var wg sync.WaitGroup
		wg.Go(func() { saveErr = st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: "late"}}) })
		wg.Go(func() { deleteErr = st.Delete(ctx, run.Key()) })
		wg.Wait()
		if deleteErr != nil {
			t.Fatalf("%s: delete: %v", run.Key(), deleteErr)
		}
		if saveErr != nil && !errors.Is(saveErr, engine.ErrConflict) {
			t.Fatalf("%s: save: %v", run.Key(), saveErr)
		}
		if logs, err := st.Logs(ctx, run.Key(), ""); err != nil || len(logs) != 0 {
			t.Fatalf("%s: log after the delete = %v (%v), want empty (save err %v)", run.Key(), logs, err, saveErr)
		}
	}
}

func testList(t *testing.T, st store.Store) {
	ctx := t.Context()
	start := NewRun("x", "y").Object.Status.StartTime.Time
	end := time.Date(2025, 3, 14, 16, 0, 0, 0, time.UTC)
	for _, r := range []struct {
		ns, name string
		phase    v1alpha1.WorkflowRunPhase
	}{
		{"team-b", "zeta", v1alpha1.RunSucceeded},
		{"team-a", "beta", v1alpha1.RunFailed},
		{"team-a", "alpha", v1alpha1.RunSucceeded},
		{"team-a", "gamma", v1alpha1.RunExecuting},
		{"team-b", "eta", ""}, // not started
	} {
		run := NewRun(r.ns, r.name)
		run.Object.Status.Phase = r.phase
		run.Object.Status.Message = "phase " + string(r.phase)
		if r.phase.Finished() {
			run.Object.Status.EndTime = metav1.NewTime(end)
		}
		if r.phase == "" {
			run.Object.Status = v1alpha1.WorkflowRunStatus{}
			run.Spec = nil
		}
		if err := st.Save(ctx, run, nil); err != nil {
			t.Fatal(err)
		}
	}
	names := func(opts store.ListOptions) string {
		t.Helper()
		runs, err := st.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range runs {
			out = append(out, r.Namespace+"/"+r.Name)
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		opts store.ListOptions
		want string
	}{
		{store.ListOptions{}, "team-a/alpha team-a/beta team-a/gamma team-b/eta team-b/zeta"},
		{store.ListOptions{Namespace: "team-a"}, "team-a/alpha team-a/beta team-a/gamma"},
		{store.ListOptions{Phase: "succeeded"}, "team-a/alpha team-b/zeta"},
		{store.ListOptions{Namespace: "team-a", Phase: "succeeded"}, "team-a/alpha"},
		{store.ListOptions{Limit: 2}, "team-a/alpha team-a/beta"},
		{store.ListOptions{Limit: 2, Offset: 2}, "team-a/gamma team-b/eta"},
		{store.ListOptions{Offset: 4}, "team-b/zeta"},
		{store.ListOptions{Namespace: "nobody"}, ""},
	} {
		if got := names(c.opts); got != c.want {
			t.Errorf("List(%+v) = %q, want %q", c.opts, got, c.want)
		}
	}
	if _, err := st.List(ctx, store.ListOptions{Limit: -1}); err == nil {
		t.Error("List with a negative limit: no error")
	}

	// The summary reflects the saved status.
	runs, err := st.List(ctx, store.ListOptions{Namespace: "team-a", Phase: "failed"})
	if err != nil || len(runs) != 1 {
		t.Fatalf("List failed runs of team-a = %v, %v", runs, err)
	}
	r := runs[0]
	if r.Phase != v1alpha1.RunFailed || r.Message != "phase failed" || !r.StartTime.Equal(start) || !r.EndTime.Equal(end) {
		t.Errorf("summary = %+v; want failed, message, start %v, end %v", r, start, end)
	}
	if r.StartTime.Location() != time.UTC {
		t.Errorf("start time in %v, want UTC", r.StartTime.Location())
	}
	// NewRun: fetch succeeded; group and its sub-step notify running; sub-step wait not started.
	if want := (store.StepCounts{Total: 4, Pending: 1, Running: 2, Succeeded: 1}); r.Steps != want {
		t.Errorf("step counts = %+v, want %+v", r.Steps, want)
	}
	if run, err := st.Load(ctx, engine.Key{Namespace: "team-a", Name: "beta"}); err != nil || run.Version != r.Version {
		t.Errorf("summary version %d, stored run %v (%v)", r.Version, run.Version, err)
	}
	running, err := st.List(ctx, store.ListOptions{Phase: "executing"})
	if err != nil || len(running) != 1 || !running[0].EndTime.IsZero() {
		t.Errorf("executing runs = %+v (%v), want one without an end time", running, err)
	}

	// A run not started yet counts its inline steps, all pending.
	eta, err := st.List(ctx, store.ListOptions{Namespace: "team-b", Limit: 1})
	if err != nil || len(eta) != 1 {
		t.Fatalf("List team-b = %v, %v", eta, err)
	}
	if want := (store.StepCounts{Total: 4, Pending: 4}); eta[0].Steps != want || !eta[0].StartTime.IsZero() {
		t.Errorf("team-b/eta = %+v; want steps %+v and no start time", eta[0], want)
	}
}

// Definition is a WorkflowStepDefinition with a CUE template (none when template is empty).
func Definition(namespace, name, template string) *v1beta1.WorkflowStepDefinition {
	d := &v1beta1.WorkflowStepDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.oam.dev/v1beta1", Kind: v1beta1.KindWorkflowStepDefinition},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
	}
	if template != "" {
		d.Spec.Schematic = &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: template}}
	}
	return d
}

// Workflow is a Workflow template of one apply-object step in DAG mode.
func Workflow(namespace, name string) *v1alpha1.Workflow {
	return &v1alpha1.Workflow{
		TypeMeta:   metav1.TypeMeta{APIVersion: "core.oam.dev/v1alpha1", Kind: v1alpha1.KindWorkflow},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Mode:       &v1alpha1.WorkflowExecuteMode{Steps: v1alpha1.ModeDAG},
		WorkflowSpec: v1alpha1.WorkflowSpec{Steps: []v1alpha1.WorkflowStep{
			{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "apply", Type: "apply-object"}},
		}},
	}
}

func defNames(defs []*v1beta1.WorkflowStepDefinition) string {
	var names []string
	for _, d := range defs {
		names = append(names, d.Namespace+"/"+d.Name)
	}
	return fmt.Sprint(names)
}

func testPutObjects(t *testing.T, st store.Store) {
	ctx := t.Context()
	defs := []*v1beta1.WorkflowStepDefinition{
		Definition("default", "notify", "parameter: {to: string}"),
		Definition("vela-system", "notify", "parameter: {channel: string}"),
		Definition("default", "apply", "parameter: {}"),
	}
	if err := st.PutObjects(ctx, defs, []*v1alpha1.Workflow{Workflow("default", "deploy")}); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ ns, typ, want string }{
		{"default", "notify", "parameter: {to: string}"},
		{"vela-system", "notify", "parameter: {channel: string}"},
	} {
		got, err := st.Template(ctx, c.ns, c.typ)
		if err != nil || got != c.want {
			t.Errorf("Template(%s, %s) = %q, %v; want %q", c.ns, c.typ, got, err, c.want)
		}
	}
	// No fallback to another namespace: the caller chains namespaces.
	if _, err := st.Template(ctx, "vela-system", "apply"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Template of a definition stored only in another namespace: err = %v, want ErrNotFound", err)
	}

	listed, err := st.Definitions(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if got := defNames(listed); got != "[default/apply default/notify]" {
		t.Errorf("Definitions(default) = %s", got)
	}
	if listed[1].Spec.Schematic.CUE.Template != "parameter: {to: string}" || listed[1].Kind != v1beta1.KindWorkflowStepDefinition {
		t.Errorf("listed definition = %+v, want the stored object", listed[1])
	}
	all, err := st.Definitions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := defNames(all); got != "[default/apply default/notify vela-system/notify]" {
		t.Errorf("Definitions(every namespace) = %s", got)
	}

	wf, err := st.Workflow(ctx, "default", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if wf.Mode == nil || wf.Mode.Steps != v1alpha1.ModeDAG || len(wf.Steps) != 1 || wf.Steps[0].Type != "apply-object" {
		t.Errorf("Workflow = %+v, want the stored template", wf)
	}
	if _, err := st.Workflow(ctx, "other", "deploy"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Workflow in another namespace: err = %v, want ErrNotFound", err)
	}

	// Applying again replaces, by namespace and name.
	if err := st.PutObjects(ctx, []*v1beta1.WorkflowStepDefinition{Definition("default", "notify", "parameter: {to: [...string]}")}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Template(ctx, "default", "notify"); got != "parameter: {to: [...string]}" {
		t.Errorf("Template after applying again = %q, want the new template", got)
	}
	if listed, err := st.Definitions(ctx, "default"); err != nil || len(listed) != 2 || listed[1].Spec.Schematic.CUE.Template != "parameter: {to: [...string]}" {
		t.Errorf("Definitions(default) after applying again = %v, %v; want the replacement, once", listed, err)
	}
}

func testPutObjectsIsAllOrNothing(t *testing.T, st store.Store) {
	ctx := t.Context()
	if err := st.PutObjects(ctx, []*v1beta1.WorkflowStepDefinition{Definition("default", "notify", "parameter: {}")}, nil); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		defs []*v1beta1.WorkflowStepDefinition
		wfs  []*v1alpha1.Workflow
	}{
		"definition without template": {
			defs: []*v1beta1.WorkflowStepDefinition{
				Definition("default", "good", "parameter: {}"),
				Definition("default", "notify", "parameter: {changed: true}"),
				Definition("default", "broken", ""),
			},
			wfs: []*v1alpha1.Workflow{Workflow("default", "deploy")},
		},
		"workflow without name": {
			defs: []*v1beta1.WorkflowStepDefinition{Definition("default", "good", "parameter: {}")},
			wfs:  []*v1alpha1.Workflow{Workflow("default", "deploy"), Workflow("default", "")},
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := st.PutObjects(ctx, c.defs, c.wfs); err == nil {
				t.Fatal("PutObjects with an invalid object: no error")
			}
			if _, err := st.Template(ctx, "default", "good"); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("valid definition of a failed PutObjects: err = %v, want ErrNotFound", err)
			}
			if _, err := st.Workflow(ctx, "default", "deploy"); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("workflow of a failed PutObjects: err = %v, want ErrNotFound", err)
			}
			if got, _ := st.Template(ctx, "default", "notify"); got != "parameter: {}" {
				t.Errorf("definition stored before = %q, want it unchanged", got)
			}
		})
	}
}

// TwoStores checks two stores of one backend sharing one place (a file, a database), as two
// processes do: each sees what the other saves, and the version checks of runs and records,
// and the generations of Workflows, hold across them.
func TwoStores(t *testing.T, first, second store.Store) {
	ctx := t.Context()
	stores := []store.Store{first, second}

	// Both save their own runs at once; each sees the other's.
	const runs, saves = 8, 10
	errs := make(chan error, 2*runs)
	var wg sync.WaitGroup
	for s, st := range stores {
		for i := range runs {
			wg.Go(func() {
				run := NewRun("shared", fmt.Sprintf("store%d-run%d", s, i))
				for j := range saves {
					run.Object.Status.Message = fmt.Sprintf("save %d", j)
					if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: run.Object.Status.Message}}); err != nil {
						errs <- fmt.Errorf("store %d %s: %w", s, run.Key(), err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for s := range stores {
		other := stores[1-s]
		for i := range runs {
			key := engine.Key{Namespace: "shared", Name: fmt.Sprintf("store%d-run%d", s, i)}
			run, err := other.Load(ctx, key)
			if err != nil {
				t.Fatalf("store %d loading %s written by store %d: %v", 1-s, key, s, err)
			}
			if run.Object.Status.Message != "save 9" {
				t.Errorf("%s: message %q, want %q", key, run.Object.Status.Message, "save 9")
			}
			logs, err := other.Logs(ctx, key, "")
			if err != nil || len(logs) != saves {
				t.Errorf("%s: %d log entries (%v), want %d", key, len(logs), err, saves)
			}
		}
	}

	// The version check holds across stores: both load, the first to save wins.
	key := engine.Key{Namespace: "shared", Name: "store0-run0"}
	a, err := stores[0].Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := stores[1].Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := stores[1].Save(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	if err := stores[0].Save(ctx, a, nil); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("save from store 0 after store 1 saved the same version: err = %v, want ErrConflict", err)
	}

	twoStoresRecords(t, stores)
	twoStoresWorkflows(t, stores)
}

// twoStoresRecords has both stores update one record at the same version at once, again and
// again: each time exactly one wins, and the other gets a conflict.
func twoStoresRecords(t *testing.T, stores []store.Store) {
	ctx := t.Context()
	version, err := stores[0].PutRecord(ctx, "token", "shared", []byte("start"), 0)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		var versions [2]int64
		var errs [2]error
		var wg sync.WaitGroup
		for s, st := range stores {
			wg.Go(func() {
				versions[s], errs[s] = st.PutRecord(ctx, "token", "shared", fmt.Appendf(nil, "round %d store %d", round, s), version)
			})
		}
		wg.Wait()
		won := -1
		for s, err := range errs {
			switch {
			case err == nil && won == -1:
				won = s
			case err == nil:
				t.Fatalf("round %d: both stores updated the record at version %d", round, version)
			case !errors.Is(err, engine.ErrConflict):
				t.Fatalf("round %d: store %d: %v, want success or ErrConflict", round, s, err)
			}
		}
		if won == -1 {
			t.Fatalf("round %d: neither store updated the record: %v", round, errs)
		}
		version = versions[won]
		r, err := stores[1-won].Record(ctx, "token", "shared")
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("round %d store %d", round, won); string(r.Data) != want || r.Version != version {
			t.Fatalf("round %d: the other store reads {%s %d}, want {%s %d}", round, r.Data, r.Version, want, version)
		}
	}
}

// twoStoresWorkflows has both stores put a different version of one Workflow at once, again
// and again: each put changes it, so each round adds two generations, one per put.
func twoStoresWorkflows(t *testing.T, stores []store.Store) {
	ctx := t.Context()
	const rounds = 100
	if err := stores[0].PutObjects(ctx, nil, []*v1alpha1.Workflow{Workflow("shared", "deploy")}); err != nil {
		t.Fatal(err)
	}
	for round := range rounds {
		var gens [2]int64
		var errs [2]error
		var wg sync.WaitGroup
		ready, start := sync.WaitGroup{}, make(chan struct{})
		ready.Add(len(stores))
		for s, st := range stores {
			wg.Go(func() {
				wf := Workflow("shared", "deploy")
				wf.Steps[0].Name = fmt.Sprintf("round%d-store%d", round, s)
				ready.Done()
				<-start // as close together as goroutines get
				errs[s] = st.PutObjects(ctx, nil, []*v1alpha1.Workflow{wf})
				gens[s] = wf.Generation
			})
		}
		ready.Wait()
		close(start)
		wg.Wait()
		for s, err := range errs {
			if err != nil {
				t.Fatalf("round %d: store %d: %v", round, s, err)
			}
		}
		if lo, hi := min(gens[0], gens[1]), max(gens[0], gens[1]); lo != int64(2*round+2) || hi != lo+1 {
			t.Fatalf("round %d: the puts set generations %v, want %d and %d", round, gens, 2*round+2, 2*round+3)
		}
	}
	for s, st := range stores {
		if wf, err := st.Workflow(ctx, "shared", "deploy"); err != nil || wf.Generation != 2*rounds+1 {
			t.Errorf("store %d: Workflow after the rounds = %+v, %v; want generation %d", s, wf, err, 2*rounds+1)
		}
	}
}

// Reopen checks that what a store saved is there when the same place is opened again: the
// run at its version, its log, the objects, and versions that keep growing. open opens a store
// on the place; Reopen closes what it opens.
func Reopen(t *testing.T, open func() (store.Store, error)) {
	ctx := t.Context()
	st, err := open()
	if err != nil {
		t.Fatal(err)
	}
	run := NewRun("default", "kept")
	if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: "hello"}}); err != nil {
		t.Fatal(err)
	}
	changed := Workflow("default", "deploy")
	changed.Steps[0].Type = "apply-objects"
	if err := st.PutObjects(ctx, nil, []*v1alpha1.Workflow{Workflow("default", "deploy"), changed}); err != nil {
		t.Fatal(err)
	}
	recVersion, err := st.PutRecord(ctx, "token", "t1", []byte("secret hash"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	if st, err = open(); err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}()
	got, err := st.Load(ctx, run.Key())
	if err != nil {
		t.Fatalf("after reopening: %v", err)
	}
	if got.Version != run.Version || got.Object.Status.Message != run.Object.Status.Message {
		t.Errorf("after reopening: version %d message %q, want %d %q", got.Version, got.Object.Status.Message, run.Version, run.Object.Status.Message)
	}
	logs, err := st.Logs(ctx, run.Key(), "")
	if err != nil || len(logs) != 1 || logs[0].Message != "hello" {
		t.Errorf("after reopening: logs %v (%v), want the one entry", logs, err)
	}
	if wf, err := st.Workflow(ctx, "default", "deploy"); err != nil || wf.Generation != 2 || wf.Steps[0].Type != "apply-objects" {
		t.Errorf("after reopening: workflow %+v (%v), want the second version, generation 2", wf, err)
	}
	if r, err := st.Record(ctx, "token", "t1"); err != nil || string(r.Data) != "secret hash" || r.Version != recVersion {
		t.Errorf("after reopening: record %+v (%v), want its data at version %d", r, err, recVersion)
	}
	if summaries, err := st.List(ctx, store.ListOptions{}); err != nil || len(summaries) != 1 || summaries[0].Created.IsZero() {
		t.Errorf("after reopening: List = %+v (%v), want the run with its creation time", summaries, err)
	}
	// The run saves on from where it was, and versions keep growing across a reopen.
	if err := st.Save(ctx, got, nil); err != nil {
		t.Fatal(err)
	}
	if got.Version <= run.Version {
		t.Errorf("version after reopening went from %d to %d", run.Version, got.Version)
	}
}
