package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
)

// memRecords is Records in memory, with PutRecord's compare-and-swap: a stand-in for a store,
// which this package's tests cannot import (store/sqlite imports store).
type memRecords struct {
	mu      sync.Mutex
	version int64
	recs    map[string]Record
}

func (m *memRecords) PutRecord(_ context.Context, kind, key string, data []byte, version int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[kind+"/"+key]
	switch {
	case version == 0 && ok:
		return 0, ErrExists
	case version != 0 && !ok:
		return 0, engine.ErrNotFound
	case version != 0 && r.Version != version:
		return 0, engine.ErrConflict
	}
	m.version++
	m.recs[kind+"/"+key] = Record{Key: key, Data: slices.Clone(data), Version: m.version}
	return m.version, nil
}

func (m *memRecords) Record(_ context.Context, kind, key string) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[kind+"/"+key]
	if !ok {
		return Record{}, engine.ErrNotFound
	}
	return r, nil
}

func (m *memRecords) Records(_ context.Context, kind, prefix string) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Record
	for id, r := range m.recs {
		if k, ok := strings.CutPrefix(id, kind+"/"); ok && strings.HasPrefix(k, prefix) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (m *memRecords) DeleteRecord(_ context.Context, kind, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.recs[kind+"/"+key]; !ok {
		return engine.ErrNotFound
	}
	delete(m.recs, kind+"/"+key)
	return nil
}

// heldRecords is Records whose first PutRecord waits until release is closed, and which
// counts the writes.
type heldRecords struct {
	*memRecords
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	writes  atomic.Int32
}

func (h *heldRecords) PutRecord(ctx context.Context, kind, key string, data []byte, version int64) (int64, error) {
	if h.writes.Add(1) == 1 {
		h.once.Do(func() { close(h.entered) })
		<-h.release
	}
	return h.memRecords.PutRecord(ctx, kind, key, data, version)
}

// TestSlotsWriteChangesAskedMeanwhileTogether asks a slot of one key for 21 runs while the
// first run's write is held: the 20 others asked meanwhile are written in one more write of
// the key's record, not one each, and the line is as if they had been written one by one:
// 5 runs (the limit) hold a slot, the others have the places 1 to 16.
func TestSlotsWriteChangesAskedMeanwhileTogether(t *testing.T) {
	recs := &heldRecords{memRecords: &memRecords{recs: map[string]Record{}}, entered: make(chan struct{}), release: make(chan struct{})}
	slots := &Slots{Records: recs}
	const runs, limit = 21, 5
	places := make([]int, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	acquire := func(i int) {
		wg.Go(func() {
			places[i], errs[i] = slots.Acquire(t.Context(), engine.SlotRequest{
				Namespace: "default", Key: "deploy", Limit: limit, Run: fmt.Sprintf("run-%02d", i), Queue: true,
			})
		})
	}
	acquire(0)
	<-recs.entered
	for i := 1; i < runs; i++ {
		acquire(i)
	}
	// Until the 20 are waiting for the held write.
	w := slots.writer("default/deploy")
	deadline := time.Now().Add(time.Minute)
	for {
		w.mu.Lock()
		n := len(w.pending)
		w.mu.Unlock()
		if n == runs-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d changes waiting after a minute", n, runs-1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(recs.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run-%02d: %v", i, err)
		}
	}
	if n := recs.writes.Load(); n != 2 {
		t.Errorf("%d writes of the key's record, want 2 (the first, then the 20 asked meanwhile)", n)
	}
	if places[0] != 0 {
		t.Errorf("run-00, first to ask, is at place %d, want it holding a slot", places[0])
	}
	got := slices.Sorted(slices.Values(places))
	want := []int{0, 0, 0, 0, 0}
	for p := 1; p <= runs-limit; p++ {
		want = append(want, p)
	}
	if !slices.Equal(got, want) {
		t.Errorf("places %v, want %v", got, want)
	}
	hs, err := slots.Holders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, h := range hs {
		if h.Held {
			held++
		}
	}
	if held != limit || len(hs) != runs {
		t.Errorf("the record has %d holding and %d in all, want %d and %d", held, len(hs), limit, runs)
	}
}
