package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wrapRun has a step whose message is wider than an 80-column terminal, then waits: the live
// tree is redrawn while it waits.
const wrapRun = `
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: wrap}
spec:
  workflowSpec:
    steps:
    - name: first
      type: print-message-in-status
      properties: {message: "a message that is much wider than an eighty column terminal, so that a line of the tree holding it would wrap onto the next row"}
    - name: wait
      type: suspend
      properties: {duration: "1500ms"}
    - name: last
      type: print-message-in-status
      properties: {message: done}
`

// TestLiveTreeInATerminal runs `stepflow run` in a real terminal (tmux, 80 columns) on a run
// whose message is wider than the terminal: the tree is redrawn in place, so the screen ends
// with the run's line once and the steps under it, no line wrapped and no header repeated.
func TestLiveTreeInATerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a terminal")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (scripts/test.sh installs it)")
	}
	exe, err := exec.LookPath("stepflow-exe")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "wrap.yaml")
	if err := os.WriteFile(file, []byte(wrapRun), 0o600); err != nil {
		t.Fatal(err)
	}
	done := filepath.Join(dir, "done")
	socket := filepath.Join(dir, "tmux.sock") // a server of the test's own
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), "tmux", append([]string{"-S", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	shell := exe + " --data-dir " + filepath.Join(dir, "data") + " run " + file + "; touch " + done + "; sleep 60"
	tmux("new-session", "-d", "-x", "80", "-y", "30", "sh", "-c", shell)
	t.Cleanup(func() { _ = exec.CommandContext(context.Background(), "tmux", "-S", socket, "kill-server").Run() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(done); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not end:\n%s", tmux("capture-pane", "-p"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	screen := strings.TrimRight(tmux("capture-pane", "-p"), "\n")
	lines := strings.Split(screen, "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "wrap succeeded in ") ||
		!strings.HasPrefix(lines[1], "├─ ✓ first") || !strings.HasSuffix(lines[1], "…") ||
		!strings.HasPrefix(lines[2], "├─ ✓ wait") || !strings.HasPrefix(lines[3], "└─ ✓ last") {
		t.Errorf("the screen, want the run's line and its three steps, the long line cut:\n%s", screen)
	}
}
