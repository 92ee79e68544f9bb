package docs_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// shBlocks returns the ```sh blocks of a Markdown file, in order.
func shBlocks(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	for line := range strings.Lines(string(b)) {
		switch strings.TrimRight(line, "\n") {
		case "```sh":
			cur = &strings.Builder{}
		case "```":
			if cur != nil {
				blocks = append(blocks, cur.String())
				cur = nil
			}
		default:
			if cur != nil {
				cur.WriteString(line)
			}
		}
	}
	return blocks
}

// standIns are the parts of a host the test cannot have (it is no systemd machine, and it runs
// nothing as root outside its directory): systemctl and journalctl for the one unit the doc
// installs. systemctl start runs the unit's ExecStart as systemd would, with $STATE_DIRECTORY
// and the unit's Environment= in place, in the background, its output in the "journal"; stop
// sends SIGTERM and waits for it to exit.
const standIns = `
set -euo pipefail
unit_pid=""
start_unit() {
	local unit="$ROOT/etc/systemd/system/stepflow.service"
	export STATE_DIRECTORY="$ROOT/var/lib/stepflow"
	mkdir -p "$STATE_DIRECTORY" && chmod 700 "$STATE_DIRECTORY"
	export STEPFLOW_ARGS="$(grep '^Environment=STEPFLOW_ARGS=' "$unit" | cut -d= -f3- | rewrite)"
	local exec_start="$(grep '^ExecStart=' "$unit" | cut -d= -f2- | rewrite)"
	eval "exec $exec_start" >>"$ROOT/journal" 2>&1 &
	unit_pid=$!
	for _ in $(seq 300); do
		curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
		kill -0 "$unit_pid" 2>/dev/null || { cat "$ROOT/journal"; return 1; }
		sleep 0.1
	done
	echo "the unit did not become healthy" >&2; return 1
}
stop_unit() {
	[ -n "$unit_pid" ] || return 0
	kill -TERM "$unit_pid"
	local status=0
	wait "$unit_pid" || status=$?
	unit_pid=""
	[ "$status" = 0 ] || { echo "stepflow exited $status on SIGTERM" >&2; return 1; }
}
systemctl() {
	case "$*" in
	daemon-reload) ;;
	"enable --now stepflow"|"start stepflow") start_unit ;;
	"stop stepflow") stop_unit ;;
	*) echo "systemctl stand-in: $*?" >&2; return 1 ;;
	esac
}
journalctl() { cat "$ROOT/journal"; }
trap 'stop_unit || true' EXIT
`

// TestOperationsCommands runs every command of docs/operations.md, in order, as one shell
// session on a stand-in host: the installed paths (/usr/local/bin, /etc/systemd/system,
// /var/lib/stepflow, /var/backups/stepflow) are under a temporary directory, the server's port
// a free one, and systemctl and journalctl the stand-ins above; the binary is stepflow built
// as `make image` builds it, the unit deploy/systemd/stepflow.service. It checks what the doc
// says each step shows: the version, a run through the server, the metrics, the rules, a
// backup restored with its runs, and an upgrade after which the runs are still there.
func TestOperationsCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds stepflow and runs it as a service")
	}
	for _, tool := range []string{"curl", "promtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/test.sh installs it)", tool)
		}
	}
	root := t.TempDir()
	work := filepath.Join(root, "work")
	for _, d := range []string{work, filepath.Join(root, "usr", "local", "bin"), filepath.Join(root, "etc", "systemd", "system")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The directory the doc's commands run in: the binary to install, and the repository's files.
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags", "-X main.version=v0.0.0-doc -X main.commit=c0ffee", "-o", filepath.Join(work, "stepflow"), "../cmd/stepflow")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, d := range []string{"deploy", "examples"} {
		abs, err := filepath.Abs(filepath.Join("..", d))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, filepath.Join(work, d)); err != nil {
			t.Fatal(err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()

	rewrite := strings.NewReplacer(
		"/usr/local/bin/", root+"/usr/local/bin/",
		"/etc/systemd/system/", root+"/etc/systemd/system/",
		"/var/lib/stepflow", root+"/var/lib/stepflow",
		"/var/backups/stepflow", root+"/var/backups/stepflow",
		"127.0.0.1:8080", fmt.Sprintf("127.0.0.1:%d", port),
	)
	blocks := shBlocks(t, "operations.md")
	if len(blocks) < 4 {
		t.Fatalf("operations.md has %d sh blocks, want install, watch, backup and upgrade", len(blocks))
	}
	var script strings.Builder
	fmt.Fprintf(&script, "ROOT=%q\nPORT=%d\nexport PATH=%q:\"$PATH\"\n", root, port, root+"/usr/local/bin")
	fmt.Fprintf(&script, "rewrite() { sed -e 's|/usr/local/bin/|%s/usr/local/bin/|g' -e 's|/var/lib/stepflow|%s/var/lib/stepflow|g' -e 's|127.0.0.1:8080|127.0.0.1:%d|g'; }\n", root, root, port)
	script.WriteString(standIns)
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo '== block %d'\nset -x\n%s\nset +x\n", i+1, rewrite.Replace(b))
	}
	cmd := exec.CommandContext(t.Context(), "bash", "-c", script.String())
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "STEPFLOW_SERVER=", "STEPFLOW_TOKEN=", "HOME="+root)
	out, err := cmd.CombinedOutput()
	if err != nil {
		journal, _ := os.ReadFile(filepath.Join(root, "journal"))
		t.Fatalf("the commands of operations.md: %v\n%s\njournal:\n%s", err, out, journal)
	}
	got := string(out)
	for _, want := range []string{
		"stepflow v0.0.0-doc",                 // stepflow version, installed
		"hello succeeded",                     // a run through the server
		`stepflow_build_info{commit="c0ffee"`, // the metrics
		"SUCCESS",                             // promtool check rules
		"backed up to",                        // the backups
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the output has no %q:\n%s", want, got)
		}
	}
	// After the restore and after the upgrade, the run is listed.
	if n := len(regexp.MustCompile(`(?m)^default +hello +succeeded`).FindAllString(got, -1)); n < 3 {
		t.Errorf("hello listed %d times, want after the install, the restore and the upgrade:\n%s", n, got)
	}
	if _, err := os.Stat(filepath.Join(root, "var", "backups", "stepflow", "before-upgrade.db")); err != nil {
		t.Errorf("no backup before the upgrade: %v", err)
	}
	journal, _ := os.ReadFile(filepath.Join(root, "journal"))
	if n := strings.Count(string(journal), "stepflow server stopped"); n < 2 {
		t.Errorf("the server stopped cleanly %d times, want 2 (restore, upgrade):\n%s", n, journal)
	}
}
