package sqlite

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store/storetest"
)

// detachedWriter is a second writer on the store's file whose batches the test composes and
// commits itself, without its loop.
func detachedWriter(t *testing.T, s *Store) *writer {
	t.Helper()
	conn, err := s.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWriter(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.closeStatements()
		_ = conn.Close()
	})
	return w
}

// saveRequest is the request Save would submit, and where it puts the new version.
func saveRequest(t *testing.T, run *engine.Run, message string, old int64) (*request, *int64) {
	t.Helper()
	run.Object.Status.Message = message
	row, err := encodeRun(run)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := encodeLogs(row.key, []engine.LogEntry{{Step: "fetch", Message: message}})
	if err != nil {
		t.Fatal(err)
	}
	version := new(int64)
	return newRequest(saveOp(row, logs, old, version)), version
}

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), Options{Path: filepath.Join(t.TempDir(), "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConflictInABatchFailsOnlyThatSave(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	shared := storetest.NewRun("batch", "shared")
	if err := s.Save(ctx, shared, nil); err != nil {
		t.Fatal(err)
	}
	w := detachedWriter(t, s)

	a, b := storetest.NewRun("batch", "a"), storetest.NewRun("batch", "b")
	reqA, verA := saveRequest(t, a, "a", 0)
	reqShared, verShared := saveRequest(t, shared, "shared first", shared.Version)
	reqStale, _ := saveRequest(t, shared, "shared stale", shared.Version) // same version: loses to the one before
	reqB, verB := saveRequest(t, b, "b", 0)
	reqAgain, _ := saveRequest(t, a, "a again", 0) // a is stored by the first request
	reqs := []*request{reqA, reqShared, reqStale, reqB, reqAgain}
	w.commit(reqs)

	wantConflict := []bool{false, false, true, false, true}
	for i, r := range reqs {
		err := <-r.done
		if got := errors.Is(err, engine.ErrConflict); got != wantConflict[i] || (!wantConflict[i] && err != nil) {
			t.Errorf("request %d: err = %v, want conflict %v", i, err, wantConflict[i])
		}
	}
	if !(*verA < *verShared && *verShared < *verB) {
		t.Errorf("versions a %d, shared %d, b %d: want them growing in batch order", *verA, *verShared, *verB)
	}
	for key, want := range map[engine.Key]struct {
		message string
		version int64
	}{
		a.Key():      {"a", *verA},
		shared.Key(): {"shared first", *verShared},
		b.Key():      {"b", *verB},
	} {
		got, err := s.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Object.Status.Message != want.message || got.Version != want.version {
			t.Errorf("%s: %q at version %d, want %q at %d", key, got.Object.Status.Message, got.Version, want.message, want.version)
		}
		logs, err := s.Logs(ctx, key, "")
		if err != nil || len(logs) != 1 || logs[0].Message != want.message {
			t.Errorf("%s: log %v (%v), want only the entry of %q", key, logs, err, want.message)
		}
	}
}

func TestFailureInABatchWritesNothingOfIt(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	w := detachedWriter(t, s)
	run := storetest.NewRun("batch", "a")
	reqA, _ := saveRequest(t, run, "a", 0)
	broken := errors.New("disk on fire")
	reqBroken := newRequest(func(*batch) error { return broken })
	w.commit([]*request{reqA, reqBroken})

	for i, r := range []*request{reqA, reqBroken} {
		if err := <-r.done; !errors.Is(err, broken) {
			t.Errorf("request %d: err = %v, want the batch's failure", i, err)
		}
	}
	if _, err := s.Load(ctx, run.Key()); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("save in a failed batch: Load err = %v, want ErrNotFound", err)
	}
	// The writer goes on: the next batch commits.
	reqA, _ = saveRequest(t, run, "a", 0)
	w.commit([]*request{reqA})
	if err := <-reqA.done; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, run.Key()); err != nil {
		t.Errorf("after a failed batch: %v", err)
	}
}
