package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// cacheHarness is a harness whose engine has a step cache: records in a real SQLite store,
// keys evaluated by the real step runtime (in its child evaluators). The steps themselves are
// the script's, which counts their evaluations.
func cacheHarness(t *testing.T, bound func(*store.StepCache)) (*harness, *store.StepCache) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := &store.StepCache{Records: st}
	if bound != nil {
		bound(c)
	}
	h := newHarness(t, func(o *engine.Options) {
		o.Cache = c
		o.CacheKeys = step.NewRunner(step.Options{Evaluators: 1})
	})
	return h, c
}

// cachedRun is a run of a cached step a, whose output b takes.
func cachedRun(name, value, cache string) string {
	return fmt.Sprintf(`metadata: {name: %s}
spec:
  workflowSpec:
    steps:
    - {name: a, type: ok, properties: {value: %q}, cache: %s, outputs: [{name: tag, valueFrom: x}]}
    - {name: b, type: ok, inputs: [{from: tag, parameterKey: value}], outputs: [{name: copy, valueFrom: x}]}
`, name, value, cache)
}

func (h *harness) finished(key engine.Key) *engine.Run {
	h.t.Helper()
	return h.waitFor(key, "finished", func(r *engine.Run) bool { return r.Object.Status.Finished && !h.eng.Busy(key) })
}

// A step whose key has a result younger than maxAge is not evaluated: it succeeds with reason
// Cached, its outputs those of the result (which the next step takes), a log line naming where
// the result came from. Another key misses; at maxAge the result is no longer taken, and the
// step's new success replaces it.
func TestCacheHitMissAndExpiry(t *testing.T) {
	h, c := cacheHarness(t, nil)
	const cc = `{key: "parameter.value", maxAge: 10m}`
	first := h.finished(h.start(cachedRun("r1", "v1", cc)))
	if got := phases(first); got != "a=succeeded b=succeeded" {
		t.Fatalf("first run: %s", got)
	}
	if n := h.script.count("a"); n != 1 {
		t.Fatalf("a evaluated %d times in the first run", n)
	}

	h.clock.Advance(10*time.Minute - time.Second)
	key := h.start(cachedRun("r2", "v1", cc))
	hit := h.finished(key)
	if got := phases(hit); got != "a=succeeded/Cached b=succeeded" {
		t.Fatalf("second run: %s", got)
	}
	if n := h.script.count("a"); n != 1 {
		t.Fatalf("a evaluated %d times: the hit ran the step", n)
	}
	if got := varOf(hit, "copy"); got != `"v1"` {
		t.Errorf("b took %s from the hit's output, want \"v1\"", got)
	}
	if !hasLog(h, key, "cached result of r1/a from 2026-01-01T00:00:00Z") {
		t.Errorf("no log line naming the result's run and step: %v", h.store.logs[key])
	}

	miss := h.finished(h.start(cachedRun("r3", "v2", cc)))
	if got := phases(miss); got != "a=succeeded b=succeeded" || h.script.count("a") != 2 {
		t.Fatalf("another key: %s, a evaluated %d times; want a miss", got, h.script.count("a"))
	}

	h.clock.Advance(time.Second) // r1's result is 10m old now
	expired := h.finished(h.start(cachedRun("r4", "v1", cc)))
	if got := phases(expired); got != "a=succeeded b=succeeded" || h.script.count("a") != 3 {
		t.Fatalf("at maxAge: %s, a evaluated %d times; want the step evaluated", got, h.script.count("a"))
	}
	// A step declaring an output the kept result lacks runs.
	more := h.finished(h.start(strings.Replace(cachedRun("rx", "v1", cc), "outputs: [{name: tag, valueFrom: x}]",
		"outputs: [{name: tag, valueFrom: x}, {name: more, valueFrom: x}]", 1)))
	if got := phases(more); got != "a=succeeded b=succeeded" || h.script.count("a") != 4 {
		t.Fatalf("another output: %s, a evaluated %d times; want evaluated", got, h.script.count("a"))
	}
	entries, err := c.List(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Run != "rx" || entries[1].Run != "r3" {
		t.Fatalf("entries %s: want rx's (replacing r4's, which replaced r1's) and r3's", describeEntries(entries))
	}
}

func hasLog(h *harness, key engine.Key, text string) bool {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	for _, l := range h.store.logs[key] {
		if strings.Contains(l.Message, text) {
			return true
		}
	}
	return false
}

func describeEntries(entries []*engine.CacheEntry) string {
	var parts []string
	for _, e := range entries {
		parts = append(parts, fmt.Sprintf("%s/%s@%s", e.Run, e.Step, e.Created.Format(time.TimeOnly)))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// A failed step is not cached: the next run with the same key evaluates it again.
func TestCacheKeepsNoFailure(t *testing.T) {
	h, c := cacheHarness(t, nil)
	doc := func(name string) string {
		return fmt.Sprintf(`metadata: {name: %s}
spec:
  workflowSpec:
    steps:
    - {name: a, type: fail, cache: {key: '"same"', maxAge: 1h}}
`, name)
	}
	for i, name := range []string{"r1", "r2"} {
		run := h.finished(h.start(doc(name)))
		if got := phases(run); got != "a=failed/Action" {
			t.Fatalf("%s: %s", name, got)
		}
		if n := h.script.count("a"); n != i+1 {
			t.Fatalf("after %s a was evaluated %d times", name, n)
		}
	}
	if entries, _ := c.List(context.Background(), ""); len(entries) != 0 {
		t.Fatalf("entries %s: a failure was cached", describeEntries(entries))
	}
}

// The key is scoped by the step's type and namespace: a step of another type, or in another
// namespace, with the same key does not take the result.
func TestCacheKeyIsScoped(t *testing.T) {
	h, _ := cacheHarness(t, nil)
	h.finished(h.start(cachedRun("r1", "v1", `{key: '"k"', maxAge: 1h}`)))
	h.script.release("a") // a step of type block runs at once
	other := h.finished(h.start(`metadata: {name: r2}
spec:
  workflowSpec:
    steps:
    - {name: a, type: block, cache: {key: '"k"', maxAge: 1h}}
`))
	if got := phases(other); got != "a=succeeded" || h.script.count("a") != 2 {
		t.Fatalf("another type: %s, a evaluated %d times; want evaluated", got, h.script.count("a"))
	}
	elsewhere := h.finished(h.start(`metadata: {name: r3, namespace: team-b}
` + strings.SplitN(cachedRun("r3", "v1", `{key: '"k"', maxAge: 1h}`), "\n", 2)[1]))
	if got := phases(elsewhere); got != "a=succeeded b=succeeded" || h.script.count("a") != 3 {
		t.Fatalf("another namespace: %s; want evaluated", got)
	}
}

// A key that cannot be evaluated fails the step (reason Rendering), with the field it came from.
func TestCacheKeyErrorFailsTheStep(t *testing.T) {
	h, _ := cacheHarness(t, nil)
	run := h.finished(h.start(cachedRun("r1", "v1", `{key: "parameter.nope", maxAge: 1h}`)))
	st := run.Object.Status.Steps[0]
	if st.Phase != v1alpha1.StepFailed || st.Reason != v1alpha1.ReasonRendering || !strings.Contains(st.Message, "cache.key") {
		t.Fatalf("step a: %s %s %q; want failed, Rendering, naming cache.key", st.Phase, st.Reason, st.Message)
	}
	if n := h.script.count("a"); n != 0 {
		t.Errorf("a was evaluated %d times after its key failed", n)
	}
}

// A result whose outputs hold one of the run's sensitive values is not cached: the cache is
// listed to whoever may see the namespace's.
func TestCacheKeepsNoSecret(t *testing.T) {
	h, c := cacheHarness(t, nil)
	run := h.finished(h.start(`metadata: {name: r1}
spec:
  workflowSpec:
    steps:
    - {name: a, type: leak, properties: {secret: hunter2-long, mark: true}, cache: {key: '"k"', maxAge: 1h}, outputs: [{name: s, valueFrom: x}]}
`))
	if got := phases(run); got != "a=succeeded" {
		t.Fatalf("%s", got)
	}
	if entries, _ := c.List(context.Background(), ""); len(entries) != 0 {
		t.Fatalf("entries %s: a result holding a secret was cached", describeEntries(entries))
	}
}

// A namespace's cache is bounded in count and in bytes: past either, its oldest entries go.
func TestCacheEvictsTheOldest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bound func(*store.StepCache)
	}{
		{"count", func(c *store.StepCache) { c.MaxEntries = 2 }},
		{"bytes", func(c *store.StepCache) { c.MaxBytes = 450 }}, // an entry here is some 190 bytes
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, c := cacheHarness(t, tc.bound)
			const cc = `{key: "parameter.value", maxAge: 1h}`
			for i, v := range []string{"v1", "v2", "v3"} {
				h.finished(h.start(cachedRun(fmt.Sprint("r", i+1), v, cc)))
				h.clock.Advance(time.Second)
			}
			entries, err := c.List(context.Background(), "default")
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 2 || entries[0].Run != "r3" || entries[1].Run != "r2" {
				t.Fatalf("entries %s: want r3's and r2's, r1's evicted", describeEntries(entries))
			}
			again := h.finished(h.start(cachedRun("r4", "v1", cc)))
			if got := phases(again); got != "a=succeeded b=succeeded" || h.script.count("a") != 4 {
				t.Fatalf("the evicted key: %s, a evaluated %d times; want a miss", got, h.script.count("a"))
			}
		})
	}
}

// A sub-step of a step-group and each iteration of a loop look their own keys up: a later run
// takes the sub-step's result and the iterations' whose items are the same.
func TestCacheInGroupsAndLoops(t *testing.T) {
	h, _ := cacheHarness(t, nil)
	doc := func(name, items string) string {
		return fmt.Sprintf(`metadata: {name: %s}
spec:
  workflowSpec:
    steps:
    - name: g
      type: step-group
      subSteps:
      - {name: sub, type: ok, properties: {value: s}, cache: {key: parameter.value, maxAge: 1h}}
    - name: each
      type: by-item
      forEach: {items: %s}
      inputs: [{from: item, parameterKey: value}]
      properties: {kind: ok}
      cache: {key: parameter.value, maxAge: 1h}
      outputs: [{name: got, valueFrom: x}]
`, name, items)
	}
	first := h.finished(h.start(doc("r1", "[a, b]")))
	if got := phases(first); got != "g=succeeded sub=succeeded each=succeeded" {
		t.Fatalf("first run: %s", got)
	}
	second := h.finished(h.start(doc("r2", "[b, c]")))
	if got := phases(second); got != "g=succeeded sub=succeeded/Cached each=succeeded" {
		t.Fatalf("second run: %s", got)
	}
	if n := h.script.count("sub"); n != 1 {
		t.Errorf("sub evaluated %d times, want once", n)
	}
	// Iterations: a and b in the first run, only c in the second (b was cached).
	if n := h.script.count("each"); n != 3 {
		t.Errorf("the loop's iterations were evaluated %d times, want 3", n)
	}
	if got := varOf(second, "got"); got != `["b","c"]` {
		t.Errorf("the loop's outputs %s, want [\"b\",\"c\"]", got)
	}
}
