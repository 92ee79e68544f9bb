package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// The database, its -wal and -shm files and a backup are created readable by their owner
// only, whatever the umask lets through; before, they were 0644 like any file SQLite makes.
// A store left open to others is listed, file by file.
func TestStoreFilesAreTheOwnersOnly(t *testing.T) {
	old := syscall.Umask(0o022) // the usual one, which leaves 0644 to whoever asks for it
	defer syscall.Umask(old)
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.Chmod(dir, sqlite.DirMode); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "stepflow.db")
	st := open(t, path)
	run := &engine.Run{Object: &v1alpha1.WorkflowRun{}}
	run.Object.Namespace, run.Object.Name = "default", "secret"
	if err := st.Create(ctx, run, store.CreateNew); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.db")
	if err := st.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", backup} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if perm := info.Mode().Perm(); perm != sqlite.FileMode {
			t.Errorf("%s is %04o, want %04o", filepath.Base(p), perm, sqlite.FileMode)
		}
	}
	if open, err := sqlite.OpenToOthers(path); err != nil || len(open) != 0 {
		t.Errorf("a store stepflow made: %v, %v", open, err)
	}

	// As an older stepflow left it: a directory and a database anyone may read.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	open, err := sqlite.OpenToOthers(path)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(open, "; ")
	if want := dir + " is 0755; " + path + " is 0644"; got != want {
		t.Errorf("open to others: %q, want %q", got, want)
	}
	if _, err := sqlite.OpenToOthers(filepath.Join(dir, "none", "stepflow.db")); err != nil {
		t.Errorf("a store not made yet: %v", err)
	}
}
