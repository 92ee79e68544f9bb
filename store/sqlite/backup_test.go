package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// A backup taken while the store is open holds what was saved, and opens as a store.
func TestBackupWhileOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dir, "stepflow.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	run := &engine.Run{Object: &v1alpha1.WorkflowRun{}}
	run.Object.Namespace, run.Object.Name = "default", "kept"
	run.Object.Status.Phase = v1alpha1.RunSucceeded
	if err := st.Create(ctx, run, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "backup.db")
	if err := st.Backup(ctx, copyPath); err != nil {
		t.Fatal(err)
	}
	if err := st.Backup(ctx, copyPath); err == nil {
		t.Error("a backup overwrote an existing file")
	}
	restored, err := sqlite.Open(ctx, sqlite.Options{Path: copyPath})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = restored.Close() }()
	got, err := restored.Load(ctx, engine.Key{Namespace: "default", Name: "kept"})
	if err != nil || got.Object.Status.Phase != v1alpha1.RunSucceeded {
		t.Errorf("the backup's run: %v, %v", got, err)
	}
}
