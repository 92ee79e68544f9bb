package storetest

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// listNames is what List returns for opts, as "namespace/name ..." in its order.
func listNames(t *testing.T, st store.Store, opts store.ListOptions) string {
	t.Helper()
	runs, err := st.List(t.Context(), opts)
	if err != nil {
		t.Fatalf("List(%+v): %v", opts, err)
	}
	var out []string
	for _, r := range runs {
		out = append(out, r.Namespace+"/"+r.Name)
	}
	return strings.Join(out, " ")
}

// summary is List's summary of the run key.
func summary(t *testing.T, st store.Store, key engine.Key) store.RunSummary {
	t.Helper()
	runs, err := st.List(t.Context(), store.ListOptions{Namespace: key.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.Name == key.Name {
			return r
		}
	}
	t.Fatalf("List does not return %s", key)
	return store.RunSummary{}
}

// List selects by template and start time, orders newest first on request, and Count counts
// what it selects whatever the page.
func testListFilters(t *testing.T, st store.Store) {
	ctx := t.Context()
	t0 := time.Date(2025, 3, 14, 15, 0, 0, 0, time.UTC)
	const notStarted = -1
	// In the order they are created.
	for i, c := range []struct {
		ns, name, template string
		start              time.Duration // after t0
	}{
		{"default", "r1", "deploy", 0},
		{"default", "r2", "build", time.Hour},
		{"other", "r3", "deploy", 2 * time.Hour},
		{"default", "r4", "deploy", notStarted},
		{"default", "r0", "", 3 * time.Hour},
	} {
		run := NewRun(c.ns, c.name)
		run.Object.Spec.WorkflowRef = c.template
		if c.start == notStarted {
			run.Object.Status = v1alpha1.WorkflowRunStatus{}
			run.Spec = nil
		} else {
			run.Object.Status.StartTime = metav1.NewTime(t0.Add(c.start))
		}
		// Create and a first Save both create a run.
		var err error
		if i%2 == 0 {
			err = st.Create(ctx, run, store.CreateNew)
		} else {
			err = st.Save(ctx, run, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	longAgo := time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)  // before Unix nanoseconds can say
	farAhead := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) // after
	for _, c := range []struct {
		opts  store.ListOptions
		want  string
		count int
	}{
		{store.ListOptions{}, "default/r0 default/r1 default/r2 default/r4 other/r3", 5},
		{store.ListOptions{Template: "deploy"}, "default/r1 default/r4 other/r3", 3},
		{store.ListOptions{Template: "deploy", Namespace: "default"}, "default/r1 default/r4", 2},
		{store.ListOptions{Template: "deploy", Phase: "executing"}, "default/r1 other/r3", 2},
		{store.ListOptions{Template: "build"}, "default/r2", 1},
		{store.ListOptions{Template: "none"}, "", 0},
		// After is inclusive, before exclusive; a run not started has no start time to bound.
		{store.ListOptions{StartedAfter: t0.Add(time.Hour)}, "default/r0 default/r2 other/r3", 3},
		{store.ListOptions{StartedBefore: t0.Add(2 * time.Hour)}, "default/r1 default/r2", 2},
		{store.ListOptions{StartedAfter: t0.Add(time.Hour), StartedBefore: t0.Add(2 * time.Hour)}, "default/r2", 1},
		{store.ListOptions{StartedAfter: t0.Add(time.Second), StartedBefore: t0.Add(time.Hour)}, "", 0},
		{store.ListOptions{StartedAfter: longAgo}, "default/r0 default/r1 default/r2 other/r3", 4},
		{store.ListOptions{StartedBefore: farAhead}, "default/r0 default/r1 default/r2 other/r3", 4},
		{store.ListOptions{StartedAfter: farAhead}, "", 0},
		{store.ListOptions{StartedBefore: longAgo}, "", 0},
		{store.ListOptions{StartedAfter: t0, Template: "deploy"}, "default/r1 other/r3", 2},
		// Newest first, then namespace and name.
		{store.ListOptions{Newest: true}, "default/r0 default/r4 other/r3 default/r2 default/r1", 5},
		{store.ListOptions{Newest: true, Template: "deploy"}, "default/r4 other/r3 default/r1", 3},
		{store.ListOptions{Newest: true, StartedBefore: t0.Add(150 * time.Minute)}, "other/r3 default/r2 default/r1", 3},
		// Pages: Count ignores them.
		{store.ListOptions{Newest: true, Limit: 2}, "default/r0 default/r4", 5},
		{store.ListOptions{Newest: true, Limit: 2, Offset: 2}, "other/r3 default/r2", 5},
		{store.ListOptions{Newest: true, Limit: 2, Offset: 4}, "default/r1", 5},
		{store.ListOptions{Newest: true, Offset: 5}, "", 5},
		{store.ListOptions{Template: "deploy", Limit: 1, Offset: 1}, "default/r4", 3},
		{store.ListOptions{Limit: 2}, "default/r0 default/r1", 5},
	} {
		if got := listNames(t, st, c.opts); got != c.want {
			t.Errorf("List(%+v) = %q, want %q", c.opts, got, c.want)
		}
		n, err := st.Count(ctx, c.opts)
		if err != nil || n != c.count {
			t.Errorf("Count(%+v) = %d, %v; want %d", c.opts, n, err, c.count)
		}
	}

	// The summary says the template.
	for key, want := range map[engine.Key]string{{Namespace: "default", Name: "r1"}: "deploy", {Namespace: "default", Name: "r0"}: ""} {
		if got := summary(t, st, key).Template; got != want {
			t.Errorf("%s: template %q, want %q", key, got, want)
		}
	}
}

// A run's creation time is set when it is created, by Create or a first Save, kept by later
// Saves, and set anew when Create replaces the run.
func testListCreated(t *testing.T, st store.Store) {
	ctx := t.Context()
	before := time.Now()
	a, b := NewRun("default", "a"), NewRun("default", "b")
	if err := st.Create(ctx, a, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	if err := st.Save(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	ca, cb := summary(t, st, a.Key()).Created, summary(t, st, b.Key()).Created
	for key, c := range map[engine.Key]time.Time{a.Key(): ca, b.Key(): cb} {
		if c.Before(before) || c.After(after) {
			t.Errorf("%s: created %v, want between %v and %v", key, c, before, after)
		}
		if c.Location() != time.UTC {
			t.Errorf("%s: created in %v, want UTC", key, c.Location())
		}
	}
	if !ca.Before(cb) {
		t.Errorf("a created %v, b %v: want a first", ca, cb)
	}
	if got := listNames(t, st, store.ListOptions{Newest: true}); got != "default/b default/a" {
		t.Errorf("newest first: %q, want b, a", got)
	}

	// Saves keep it.
	for range 2 {
		a.Object.Status.Message = "saved again"
		if err := st.Save(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := summary(t, st, a.Key()).Created; !got.Equal(ca) {
		t.Errorf("created after Save = %v, want %v kept", got, ca)
	}
	if got := listNames(t, st, store.ListOptions{Newest: true}); got != "default/b default/a" {
		t.Errorf("newest first after saving a: %q, want b, a", got)
	}

	// A Create that replaces the run creates it anew.
	if err := st.Create(ctx, NewRun("default", "a"), store.ReplaceAny); err != nil {
		t.Fatal(err)
	}
	if got := summary(t, st, a.Key()).Created; !got.After(cb) {
		t.Errorf("created after replacing = %v, want after b's %v", got, cb)
	}
	if got := listNames(t, st, store.ListOptions{Newest: true}); got != "default/a default/b" {
		t.Errorf("newest first after replacing a: %q, want a, b", got)
	}
}
