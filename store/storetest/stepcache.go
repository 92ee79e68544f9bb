package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// StepCacheUnderTest is what StepCache checks: an engine.Cache with store.StepCache's listing
// and dropping.
type StepCacheUnderTest interface {
	engine.Cache
	List(ctx context.Context, namespace string) ([]*engine.CacheEntry, error)
	Drop(ctx context.Context, namespace, key string) error
	DropAll(ctx context.Context, namespace string) (int, error)
}

func testStepCache(t *testing.T, st store.Store) {
	StepCache(t, &store.StepCache{Records: st, MaxEntries: 20})
}

// StepCache checks a step cache bounded to 20 entries per namespace, empty in namespaces a
// and b (and holding no other entries): an entry written is read back and replaced under its
// key, namespaces are apart, listing and dropping, and the bounds: the oldest go, the count
// passing MaxEntries by a tenth at most.
func StepCache(t *testing.T, c StepCacheUnderTest) {
	ctx := context.Background()
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	put := func(ns string, i int, run string) {
		t.Helper()
		e := &engine.CacheEntry{Namespace: ns, Key: fmt.Sprintf("k%02d", i), StepType: "request", Run: run, Step: "s",
			Created: t0.Add(time.Duration(i) * time.Second), Outputs: map[string]json.RawMessage{"out": json.RawMessage(`"v"`)}}
		if err := c.PutCachedResult(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	put("a", 1, "first")
	put("a", 1, "second") // replaces
	put("b", 1, "other")
	got, err := c.CachedResult(ctx, "a", "k01")
	if err != nil || got.Run != "second" || string(got.Outputs["out"]) != `"v"` || !got.Created.Equal(t0.Add(time.Second)) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	if _, err := c.CachedResult(ctx, "a", "k02"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("a missing entry: %v, want ErrNotFound", err)
	}
	if all, _ := c.List(ctx, ""); len(all) != 2 {
		t.Fatalf("every namespace holds %d entries, want 2", len(all))
	}
	for i := 2; i <= 24; i++ {
		put("a", i, "r")
	}
	list, err := c.List(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Eviction is due at every second write to a (a tenth of 20): the 24th write of a (k23)
	// left the 20 newest, k04 to k23, and k24 came after.
	if len(list) != 21 || list[0].Key != "k24" || list[len(list)-1].Key != "k04" {
		t.Fatalf("namespace a holds %d entries, newest %s, oldest %s; want 21, k24 to k04", len(list), list[0].Key, list[len(list)-1].Key)
	}
	if err := c.Drop(ctx, "a", "k24"); err != nil {
		t.Fatal(err)
	}
	if err := c.Drop(ctx, "a", "k24"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("dropping again: %v, want ErrNotFound", err)
	}
	if n, err := c.DropAll(ctx, "a"); err != nil || n != 20 {
		t.Fatalf("drop all of a: %d, %v; want 20", n, err)
	}
	if all, _ := c.List(ctx, ""); len(all) != 1 || all[0].Namespace != "b" {
		t.Fatalf("after dropping a: %d entries left, want b's", len(all))
	}
}
