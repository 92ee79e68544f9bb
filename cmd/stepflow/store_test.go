package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The data directory the CLI makes is its owner's only, and so are the database and a backup
// (before: 0755 and 0644). A store left open to others, as an older
// stepflow made it, is named in a warning at start.
func TestTheStoreIsTheOwnersOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	stepflow := func(args ...string) string {
		t.Helper()
		var stdout, stderr strings.Builder
		if code := runIn(work, append([]string{"--data-dir", data}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("stepflow %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
		return stderr.String()
	}
	if warned := stepflow("list"); warned != "" {
		t.Errorf("a new store: stderr %q", warned)
	}
	stepflow("backup", "copy.db")
	// (The -wal and -shm files are gone once the process closes the store: package sqlite's
	// test checks them while it is open.)
	want := map[string]os.FileMode{data: 0o700, filepath.Join(data, "stepflow.db"): 0o600, filepath.Join(work, "copy.db"): 0o600}
	for p, mode := range want {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s is %04o, want %04o", p, info.Mode().Perm(), mode)
		}
	}

	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(data, "stepflow.db"), 0o644); err != nil {
		t.Fatal(err)
	}
	warned := stepflow("list")
	if !strings.Contains(warned, "warning: other users may read the store") || !strings.Contains(warned, data+" is 0755") ||
		!strings.Contains(warned, "stepflow.db is 0644") || !strings.Contains(warned, "chmod 700") {
		t.Errorf("an open store: stderr %q", warned)
	}
}
