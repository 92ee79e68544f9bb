package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// testRetention: DeleteExpired deletes, with their logs and large values, the finished runs past their own
// TTL or the default one, or not among the newest of their template; never a run that has not
// finished, nor one whose own TTL keeps it, nor one owns refuses, nor one that changed since
// it was found; at most the limit, those that ended first first.
func testRetention(t *testing.T, st store.Store) {
	ctx := t.Context()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ttl := func(s int32) *int32 { return &s }
	put := func(name, template string, ended time.Duration, own *int32) *engine.Run {
		t.Helper()
		run := NewRun("default", name)
		run.Object.Spec.WorkflowRef = template
		run.TTLSecondsAfterFinished = own
		run.Vars["large"] = LargeValue(0, 2*engine.BlobThreshold) // kept as a blob
		if ended > 0 {
			st := &run.Object.Status
			st.Phase, st.Finished, st.EndTime = v1alpha1.RunSucceeded, true, metav1.NewTime(now.Add(-ended))
		}
		if err := st.Create(ctx, run, store.CreateNew); err != nil {
			t.Fatal(err)
		}
		if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: "ran"}}); err != nil {
			t.Fatal(err)
		}
		return run
	}
	put("old", "", 48*time.Hour, nil)
	put("older", "", 50*time.Hour, nil)
	put("recent", "", time.Hour, nil)
	put("own-short", "", 10*time.Minute, ttl(60))
	put("own-long", "", 48*time.Hour, ttl(100*3600))
	put("running", "", 0, ttl(0))
	put("refused", "", 49*time.Hour, nil)
	restarted := put("restarted", "", 49*time.Hour, nil)
	owns := func(k engine.Key) bool {
		if k.Name == "restarted" { // restarted between the look-up and the delete
			restarted.Object.Status = v1alpha1.WorkflowRunStatus{Phase: v1alpha1.RunExecuting}
			if err := st.Save(context.WithoutCancel(ctx), restarted, nil); err != nil {
				t.Error(err)
			}
		}
		return k.Name != "refused"
	}
	r := engine.Retention{TTL: 24 * time.Hour}
	first, err := st.DeleteExpired(ctx, r, now, 1, owns)
	if err != nil || !slices.Equal(names(first), []string{"older"}) {
		t.Fatalf("DeleteExpired with limit 1: %v, %v; want older, which ended first", names(first), err)
	}
	rest, err := st.DeleteExpired(ctx, r, now, 100, owns)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rest); !slices.Equal(got, []string{"old", "own-short"}) {
		t.Errorf("DeleteExpired deleted %v, want old and own-short", got)
	}
	for _, name := range []string{"older", "old", "own-short"} {
		if _, err := st.Load(ctx, engine.Key{Namespace: "default", Name: name}); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("%s after its deletion: %v", name, err)
		}
		if logs, err := st.Logs(ctx, engine.Key{Namespace: "default", Name: name}, ""); err != nil || len(logs) != 0 {
			t.Errorf("%s's log after its deletion: %d entries, %v", name, len(logs), err)
		}
		if n := blobBytes(t, st, name); n > 0 {
			t.Errorf("%s's large values after its deletion: %d bytes, want none", name, n)
		}
	}
	for _, name := range []string{"recent", "own-long", "running", "refused", "restarted"} {
		if _, err := st.Load(ctx, engine.Key{Namespace: "default", Name: name}); err != nil {
			t.Errorf("%s was deleted: %v", name, err)
		}
		if n := blobBytes(t, st, name); n != 2*engine.BlobThreshold && n != -1 {
			t.Errorf("%s's large values: %d bytes, want its variable's %d", name, n, 2*engine.BlobThreshold)
		}
	}

	// Keep the newest two finished runs of each template, inline runs counting as one.
	put("t-1", "t", 3*time.Hour, nil)
	put("t-2", "t", 2*time.Hour, nil)
	put("t-3", "t", time.Hour, ttl(100*3600))
	counted, err := st.DeleteExpired(ctx, engine.Retention{Count: 2}, now, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(counted); !slices.Equal(got, []string{"refused", "t-1"}) {
		t.Errorf("keeping 2 per template deleted %v, want refused (older than the inline runs recent and own-long) and t-1", got)
	}
	deleted, err := store.Sweep(ctx, st, engine.Retention{TTL: time.Nanosecond}, now, nil)
	if err != nil || !slices.Equal(names(deleted), []string{"t-2", "recent"}) {
		t.Errorf("Sweep deleted %v, %v; want t-2 and recent", names(deleted), err)
	}
}

// blobBytes is the size of the blobs st keeps for the run named name in default, -1 when st
// is not a Sizer.
func blobBytes(t *testing.T, st store.Store, name string) int {
	t.Helper()
	sizer, ok := st.(Sizer)
	if !ok {
		return -1
	}
	n, err := sizer.BlobBytes(t.Context(), engine.Key{Namespace: "default", Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func names(keys []engine.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Name
	}
	return out
}
