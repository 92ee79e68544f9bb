package crd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/crd"
)

// Records in ConfigMaps behave as the SQL stores' records: create once, compare-and-swap by
// version, not found, listed by prefix in key order, deleted; any key makes a valid
// ConfigMap of its namespace, labelled with the kind.
func TestRecordsInConfigMaps(t *testing.T) {
	c := newClient(t)
	for _, ns := range []string{"rec-a", "rec-b"} {
		freshNamespace(t, c, ns)
	}
	ctx := context.Background()
	r := &crd.Records{Client: c}
	odd := "rec-a/step:Deploy Prod/" + strings.Repeat("ü", 300) // not a valid name in any part
	v1, err := r.PutRecord(ctx, "test-kind", odd, []byte(`{"holders":["x"]}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Record(ctx, "test-kind", odd); err != nil || got.Key != odd || string(got.Data) != `{"holders":["x"]}` || got.Version != v1 {
		t.Fatalf("Record = %+v, %v; want the data at version %d", got, err, v1)
	}
	if _, err := r.PutRecord(ctx, "test-kind", odd, []byte("again"), 0); !errors.Is(err, store.ErrExists) {
		t.Errorf("create of a stored record: err = %v, want ErrExists", err)
	}
	v2, err := r.PutRecord(ctx, "test-kind", odd, []byte("second"), v1)
	if err != nil || v2 == v1 {
		t.Fatalf("update at the stored version: version %d, %v", v2, err)
	}
	if _, err := r.PutRecord(ctx, "test-kind", odd, []byte("stale"), v1); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("update at an old version: err = %v, want ErrConflict", err)
	}
	if got, _ := r.Record(ctx, "test-kind", odd); string(got.Data) != "second" || got.Version != v2 {
		t.Errorf("after the conflict: %q at %d, want \"second\" at %d", got.Data, got.Version, v2)
	}
	if _, err := r.PutRecord(ctx, "test-kind", "rec-a/missing", []byte("x"), v2); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("update of a missing record: err = %v, want ErrNotFound", err)
	}
	if _, err := r.Record(ctx, "test-kind", "rec-a/missing"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Record of a missing record: err = %v, want ErrNotFound", err)
	}
	if _, err := r.Record(ctx, "concurrency", odd); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Record of another kind with the key: err = %v, want ErrNotFound", err)
	}
	if _, err := r.PutRecord(ctx, "test-kind", "no-namespace", nil, 0); err == nil {
		t.Error("a key without a namespace was taken")
	}
	if _, err := r.PutRecord(ctx, "Not A Kind", "rec-a/k", nil, 0); err == nil {
		t.Error("a kind that is no label value was taken")
	}
	binary := []byte{0xff, 0, 1}
	if _, err := r.PutRecord(ctx, "test-kind", "rec-b/bin", binary, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Record(ctx, "test-kind", "rec-b/bin"); !slices.Equal(got.Data, binary) {
		t.Errorf("binary data read back as %v", got.Data)
	}
	if _, err := r.PutRecord(ctx, "test-kind", "rec-b/a", []byte("b-a"), 0); err != nil {
		t.Fatal(err)
	}

	keys := func(prefix string) string {
		t.Helper()
		recs, err := r.Records(ctx, "test-kind", prefix)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, rec := range recs {
			if strings.HasPrefix(rec.Key, "rec-") { // other tests' namespaces aside
				out = append(out, rec.Key[:min(len(rec.Key), 20)])
			}
		}
		return strings.Join(out, " ")
	}
	if got, want := keys(""), "rec-a/step:Deploy Pr rec-b/a rec-b/bin"; got != want {
		t.Errorf("Records(\"\") = %q, want %q", got, want)
	}
	if got, want := keys("rec-b/"), "rec-b/a rec-b/bin"; got != want {
		t.Errorf("Records(rec-b/) = %q, want %q", got, want)
	}
	if got, want := keys("rec-b/b"), "rec-b/bin"; got != want {
		t.Errorf("Records(rec-b/b) = %q, want %q", got, want)
	}

	var cms corev1.ConfigMapList
	if err := c.List(ctx, &cms, client.InNamespace("rec-a"), client.MatchingLabels{crd.LabelRecord: "test-kind"}); err != nil {
		t.Fatal(err)
	}
	if len(cms.Items) != 1 || !strings.HasPrefix(cms.Items[0].Name, "stepflow-record-test-kind-") {
		t.Errorf("ConfigMaps of rec-a's records: %d, want 1 named stepflow-record-test-kind-<hash>", len(cms.Items))
	}

	if err := r.DeleteRecord(ctx, "test-kind", odd); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteRecord(ctx, "test-kind", odd); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
	if _, err := r.PutRecord(ctx, "test-kind", odd, []byte("x"), v2); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("update of a deleted record: err = %v, want ErrNotFound", err)
	}
}

// Two processes' store.Slots over the same API server (each its own Records, as two
// controllers would have) racing for a key of limit 1: exactly one run holds it, the others
// wait in line, and each release hands it to exactly one more.
func TestSlotsInConfigMapsShareAKey(t *testing.T) {
	c := newClient(t)
	freshNamespace(t, c, "slots")
	ctx := context.Background()
	procs := []*store.Slots{{Records: &crd.Records{Client: c}}, {Records: &crd.Records{Client: c}}}
	const runs = 6
	var wg sync.WaitGroup
	places := make([]int, runs)
	errs := make([]error, runs)
	for i := range runs {
		wg.Go(func() {
			places[i], errs[i] = procs[i%2].Acquire(ctx, engine.SlotRequest{
				Namespace: "slots", Key: "step:deploy prod", Limit: 1, Run: fmt.Sprintf("r%d/deploy", i), Queue: true,
			})
		})
	}
	wg.Wait()
	holding := func() []string {
		t.Helper()
		hs, err := procs[1].Holders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hs {
			if h.Namespace == "slots" && h.Held {
				out = append(out, h.Run)
			}
		}
		return out
	}
	var first string
	for i := range runs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if places[i] == 0 {
			if first != "" {
				t.Fatalf("both %s and r%d got the slot of a key of limit 1", first, i)
			}
			first = fmt.Sprintf("r%d/deploy", i)
		}
	}
	if got := holding(); !slices.Equal(got, []string{first}) {
		t.Fatalf("holders %v, want [%s]", got, first)
	}
	for range runs - 1 {
		next, err := procs[0].Release(ctx, "slots", "step:deploy prod", first)
		if err != nil {
			t.Fatal(err)
		}
		if len(next) != 1 {
			t.Fatalf("release of %s handed the slot to %v, want one run", first, next)
		}
		if got := holding(); !slices.Equal(got, next) {
			t.Fatalf("holders %v, want %v", got, next)
		}
		first = next[0]
	}
}
