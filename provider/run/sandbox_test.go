package run_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/run"
)

// sandbox returns the local backend; the test fails where bubblewrap is missing
// (scripts/test.sh installs it).
func sandbox(t *testing.T, network bool) *run.Sandbox {
	t.Helper()
	for _, p := range []string{"bwrap", "prlimit"} {
		if _, err := execLookPath(p); err != nil {
			t.Fatalf("%s is not installed (Debian's bubblewrap, util-linux; scripts/test.sh installs them): %v", p, err)
		}
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil { // nobody, whom root's jobs run as, goes through them
			t.Fatal(err)
		}
	}
	return &run.Sandbox{Network: network, TempDir: dir}
}

// script runs a shell script in s and returns its result and its lines of output.
func script(t *testing.T, s *run.Sandbox, text string, mod func(*run.Job)) (*run.Result, []string) {
	t.Helper()
	job := &run.Job{Argv: []string{"/bin/bash", run.ScriptPath}, Script: text, Timeout: 20 * time.Second, Memory: run.DefaultMemory, Cleanup: "always"}
	if mod != nil {
		mod(job)
	}
	var lines []string
	res, err := s.Run(context.Background(), job, func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res, lines
}

func TestSandboxOutputsAndLogs(t *testing.T) {
	s := sandbox(t, false)
	res, lines := script(t, s, "echo one; echo two >&2; pwd; printf 'v1\\n' > $STEPFLOW_OUTPUTS/version; printf 'a\\nb' > $STEPFLOW_OUTPUTS/multi", func(j *run.Job) {
		j.Outputs = []string{"version", "multi"}
	})
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d, lines %q", res.ExitCode, lines)
	}
	if got := strings.Join(lines, "|"); got != "one|two|"+run.WorkDir {
		t.Errorf("lines = %q", got)
	}
	if res.Outputs["version"] != "v1" || res.Outputs["multi"] != "a\nb" {
		t.Errorf("outputs = %q", res.Outputs)
	}
	if entries, _ := os.ReadDir(s.TempDir); len(entries) != 0 {
		t.Errorf("the run's directory is left behind: %v", entries)
	}
}

func TestSandboxFailsWithCodeAndLastLines(t *testing.T) {
	s := sandbox(t, false)
	res, _ := script(t, s, "for i in $(seq 1 30); do echo line $i; done; exit 3", nil)
	if res.ExitCode != 3 || res.TimedOut {
		t.Fatalf("exit code %d, timed out %v", res.ExitCode, res.TimedOut)
	}
	if len(res.Tail) != run.TailLines || res.Tail[len(res.Tail)-1] != "line 30" || res.Tail[0] != "line 21" {
		t.Errorf("tail = %q", res.Tail)
	}
}

func TestSandboxMissingOutputAndSymlink(t *testing.T) {
	s := sandbox(t, false)
	res, _ := script(t, s, "ln -s /etc/hostname $STEPFLOW_OUTPUTS/link", func(j *run.Job) { j.Outputs = []string{"link"} })
	if res.ExitCode == 0 || !strings.Contains(strings.Join(res.Tail, "\n"), "output link: not a regular file") {
		t.Errorf("a symlink as output: exit %d, tail %q", res.ExitCode, res.Tail)
	}
	res, _ = script(t, s, "true", func(j *run.Job) { j.Outputs = []string{"absent"} })
	if res.ExitCode == 0 || !strings.Contains(strings.Join(res.Tail, "\n"), "wrote no file /stepflow/outputs/absent") {
		t.Errorf("a missing output: exit %d, tail %q", res.ExitCode, res.Tail)
	}
}

func TestSandboxHasNoNetwork(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("reached")) }))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	host, port := u.Hostname(), u.Port()
	connect := "exec 3<>/dev/tcp/" + host + "/" + port + " && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"

	res, lines := script(t, sandbox(t, false), connect, nil)
	if res.ExitCode == 0 || strings.Contains(strings.Join(lines, "\n"), "reached") {
		t.Errorf("the script reached %s without the network: exit %d, %q", srv.URL, res.ExitCode, lines)
	}
	// The same script with the network reaches it, so the check above can fail.
	res, lines = script(t, sandbox(t, true), connect, func(j *run.Job) { j.Network = true })
	if res.ExitCode != 0 || !strings.Contains(strings.Join(lines, "\n"), "reached") {
		t.Errorf("with the network: exit %d, %q", res.ExitCode, lines)
	}
	// A job asking for the network where it is not given fails at once.
	_, err := sandbox(t, false).Run(context.Background(), &run.Job{Argv: []string{"true"}, Timeout: time.Second, Network: true}, func(string) {})
	if _, ok := errors.AsType[*engine.TerminalError](err); !ok || !strings.Contains(err.Error(), "egress") {
		t.Errorf("network asked, not given: %v", err)
	}
}

func TestSandboxCannotWriteOutside(t *testing.T) {
	s := sandbox(t, false)
	repo, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(repo, "written-by-sandbox")
	res, lines := script(t, s, "echo x > "+target+" || exit 7; echo x > /usr/written-by-sandbox || exit 8", nil)
	if res.ExitCode != 7 {
		t.Errorf("writing to %s: exit %d, %q", target, res.ExitCode, lines)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		_ = os.Remove(target)
		t.Errorf("%s exists after the run: %v", target, err)
	}
	res, lines = script(t, s, "echo x > /usr/written-by-sandbox || exit 8", nil)
	if res.ExitCode != 8 {
		t.Errorf("writing to /usr: exit %d, %q", res.ExitCode, lines)
	}
	// Its own directories and /tmp it may write.
	res, lines = script(t, s, "echo x > /tmp/a && echo x > $HOME/b && mkdir sub", nil)
	if res.ExitCode != 0 {
		t.Errorf("writing to its own directories: exit %d, %q", res.ExitCode, lines)
	}
}

// A job has no capabilities, and a root stepflow's jobs run as nobody: the host's secrets that
// only root reads stay unread.
func TestSandboxHasNoPrivileges(t *testing.T) {
	s := sandbox(t, false)
	res, lines := script(t, s, "grep CapEff /proc/self/status; id -u; cat /etc/shadow >/dev/null 2>&1 && echo read shadow; true", nil)
	out := strings.Join(lines, "\n")
	if res.ExitCode != 0 || !strings.Contains(out, "CapEff:\t0000000000000000") || strings.Contains(out, "read shadow") {
		t.Errorf("exit %d, %q: want no capabilities and /etc/shadow unread", res.ExitCode, out)
	}
	if os.Geteuid() == 0 && !strings.Contains(out, "\n65534") {
		t.Errorf("%q: a root stepflow's job runs as nobody (65534)", out)
	}
}

func TestSandboxTimeoutKillsEverything(t *testing.T) {
	s := sandbox(t, false)
	marker := "1000.271828" // an argument of sleep no other process has
	began := time.Now()
	res, _ := script(t, s, "sleep "+marker+" & (setsid sleep "+marker+" &) ; echo started; wait", func(j *run.Job) { j.Timeout = time.Second })
	if !res.TimedOut || res.ExitCode != -1 {
		t.Fatalf("timed out %v, exit %d", res.TimedOut, res.ExitCode)
	}
	if took := time.Since(began); took > 15*time.Second {
		t.Errorf("the run returned after %s", took) // not a timing target: the kill did not work
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := sleepers(t, marker)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the job outlived its timeout: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sleepers lists the processes whose command line holds marker.
func sleepers(t *testing.T, marker string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 2 && strings.HasSuffix(args[0], "sleep") && args[1] == marker {
			out = append(out, f+": "+strings.Join(args, " "))
		}
	}
	return out
}

func TestSandboxLimits(t *testing.T) {
	s := sandbox(t, false)
	// The address space: a program asking for more than the limit is refused.
	res, lines := script(t, s, "ulimit -v; ulimit -t", func(j *run.Job) { j.Memory = 256 << 20; j.CPU = 0.5 })
	if res.ExitCode != 0 || strings.Join(lines, ",") != "262144,10" {
		t.Errorf("limits seen in the sandbox: exit %d, %q (want 262144 KiB and 0.5 cores × 20 s = 10 s of CPU)", res.ExitCode, lines)
	}
	// A shell asking for 200 MB under a limit of 64 MiB fails to get it (without the limit it
	// gets it: bash's printf pads a string that long in a second).
	res, lines = script(t, s, "x=$(printf '%*s' 200000000 ''); echo ${#x}", func(j *run.Job) { j.Memory = 64 << 20 })
	if res.ExitCode == 0 || !strings.Contains(strings.Join(lines, "\n"), "cannot allocate") {
		t.Errorf("a shell holding 200 MB under a 64 MiB limit: exit %d, %q", res.ExitCode, lines)
	}
}
