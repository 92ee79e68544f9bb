// sandbox.go: the local backend, Debian's bubblewrap (bwrap) under prlimit.

package run

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// systemDirs are the host's directories a job sees, read-only, when they exist: its programs
// and libraries and /etc (for certificates, users, name resolution). Nothing else of the host's
// filesystem (home directories, the data directory, the repository) is in the sandbox.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"}

// nobody is the user and group a job runs as when stepflow runs as root.
const nobody = 65534

// outputGrace is how long a job's output is read after it ended.
const outputGrace = 5 * time.Second

// Sandbox runs jobs on this host under bubblewrap, as the user stepflow runs as (as nobody when
// that is root), without capabilities: in new namespaces (no network unless the
// job asks for it and Network allows; its own process IDs, so that every process of the job
// ends with it), the system directories read-only, a private /tmp, a private working
// directory and an outputs directory, the environment cleared, under rlimits (prlimit) for
// its address space and CPU time, and killed with everything it started at its timeout or
// when this process dies.
type Sandbox struct {
	// Bwrap and Prlimit are the programs; "" finds bwrap and prlimit on PATH.
	Bwrap, Prlimit string
	// Network lets a job that asks for the network share the host's. Inside the sandbox
	// stepflow cannot check a connection against the egress lists, so the assembly sets it
	// only when those lists restrict nothing (egress.Policy.Open).
	Network bool
	// TempDir is where each job's directory is made; "" is os.TempDir().
	TempDir string
}

// Run implements Backend.
func (s *Sandbox) Run(ctx context.Context, job *Job, line func(string)) (res *Result, err error) {
	if job.Network && !s.Network {
		return nil, terminal(errors.New("the step asks for the network, which the local sandbox gives only when the egress policy restricts nothing (no --egress-allow, no --egress-deny, link-local addresses allowed): stepflow cannot check a script's connections"))
	}
	dir, err := os.MkdirTemp(s.TempDir, "stepflow-run-")
	if err != nil {
		return nil, fmt.Errorf("making the run's directory: %w", err)
	}
	res = &Result{ExitCode: -1}
	defer func() {
		keep := job.Cleanup == "never" || job.Cleanup == "onSuccess" && (err != nil || res.ExitCode != 0)
		if keep && err == nil {
			res.Kept = dir
			return
		}
		_ = os.RemoveAll(dir)
	}()
	work, outputs := filepath.Join(dir, "work"), filepath.Join(dir, "outputs")
	for _, d := range []string{work, outputs} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("making the run's directory: %w", err)
		}
	}
	argv, err := s.argv(job, dir, work, outputs)
	if err != nil {
		return nil, err
	}
	asRoot := os.Geteuid() == 0
	if asRoot {
		// Root's programs would keep root's capabilities and files in the sandbox: the job
		// runs as nobody, which owns its directories.
		for _, p := range []string{dir, work, outputs, filepath.Join(dir, "script")} {
			if err := os.Lchown(p, nobody, nobody); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("giving the run's directory to nobody: %w", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, job.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{}
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if asRoot {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
	}
	// bwrap's child is the job's PID 1 (it dies with bwrap, and bwrap with this process:
	// --die-with-parent) and every process of the job goes with it; the group is killed too.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return nil, fmt.Errorf("starting bubblewrap: %w", err)
	}
	_ = pw.Close() // the child holds its end
	exited, read := make(chan struct{}), make(chan struct{})
	var werr error
	go func() {
		werr = cmd.Wait()
		close(exited)
	}()
	// Should a process the kill did not reach keep the output open, it is not read for longer
	// than outputGrace after the job ended or was killed.
	go func() {
		select {
		case <-exited:
		case <-ctx.Done():
		case <-read:
			return
		}
		t := time.NewTimer(outputGrace)
		defer t.Stop()
		select {
		case <-t.C:
			_ = pr.Close()
		case <-read:
		}
	}()
	var tail []string
	readLines(pr, func(l string) {
		line(l)
		if tail = append(tail, l); len(tail) > TailLines {
			tail = tail[1:]
		}
	})
	close(read)
	_ = pr.Close()
	<-exited
	res.Tail = tail
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		res.TimedOut = true
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err // the caller went away: the job was killed
	}
	var exit *exec.ExitError
	if werr != nil && !errors.As(werr, &exit) {
		return nil, fmt.Errorf("running bubblewrap: %w", werr)
	}
	res.ExitCode = cmd.ProcessState.ExitCode()
	if res.ExitCode != 0 {
		return res, nil
	}
	res.Outputs = map[string]string{}
	for _, name := range job.Outputs {
		v, err := readOutput(filepath.Join(outputs, name))
		if err != nil {
			res.ExitCode = -1
			res.Tail = append(res.Tail, fmt.Sprintf("vela/run: output %s: %v", name, err))
			res.Outputs = nil
			return res, nil
		}
		res.Outputs[name] = v
	}
	return res, nil
}

// argv is the command line of a job: prlimit, bwrap and the job's program.
func (s *Sandbox) argv(job *Job, dir, work, outputs string) ([]string, error) {
	prlimit, bwrap := s.Prlimit, s.Bwrap
	var err error
	if prlimit == "" {
		if prlimit, err = exec.LookPath("prlimit"); err != nil {
			return nil, fmt.Errorf("the local sandbox needs prlimit (Debian's util-linux): %w", err)
		}
	}
	if bwrap == "" {
		if bwrap, err = exec.LookPath("bwrap"); err != nil {
			return nil, fmt.Errorf("the local sandbox needs bwrap (Debian's bubblewrap): %w", err)
		}
	}
	argv := []string{prlimit, "--as=" + strconv.FormatInt(job.Memory, 10)}
	if job.CPU > 0 {
		// The CPU time the job could use at job.CPU cores over its whole timeout, per process.
		secs := int64(math.Ceil(job.CPU * job.Timeout.Seconds()))
		argv = append(argv, "--cpu="+strconv.FormatInt(max(secs, 1), 10))
	}
	argv = append(argv, "--", bwrap)
	for _, d := range systemDirs {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(d)
			if err != nil {
				continue
			}
			argv = append(argv, "--symlink", target, d)
		default:
			argv = append(argv, "--ro-bind", d, d)
		}
	}
	argv = append(argv, "--unshare-all")
	if job.Network {
		argv = append(argv, "--share-net")
	}
	argv = append(argv, "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--clearenv",
		"--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
		"--dir", "/stepflow", "--bind", work, WorkDir, "--bind", outputs, OutputsDir)
	if job.Script != "" {
		script := filepath.Join(dir, "script")
		if err := os.WriteFile(script, []byte(job.Script), 0o500); err != nil {
			return nil, fmt.Errorf("writing the script: %w", err)
		}
		argv = append(argv, "--ro-bind", script, ScriptPath)
	}
	env := append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
		"HOME=" + WorkDir, "TMPDIR=/tmp", "STEPFLOW_OUTPUTS=" + OutputsDir}, job.Env...)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		argv = append(argv, "--setenv", k, v)
	}
	wd := job.WorkingDir
	if wd == "" {
		wd = WorkDir
	} else if !filepath.IsAbs(wd) {
		wd = filepath.Join(WorkDir, wd)
	}
	argv = append(argv, "--chdir", wd, "--")
	return append(argv, job.Argv...), nil
}

// readLines calls f with each line of r, cut at MaxLineBytes, until r ends.
func readLines(r io.Reader, f func(string)) {
	br := bufio.NewReaderSize(r, MaxLineBytes)
	var cur []byte
	cut := false
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(chunk) > 0 && !cut {
			room := MaxLineBytes - len(cur)
			if len(chunk) > room {
				chunk, cut = chunk[:room], true
			}
			cur = append(cur, chunk...)
		}
		if err != nil {
			if len(cur) > 0 {
				f(string(cur))
			}
			return
		}
		if !isPrefix {
			f(string(cur))
			cur, cut = cur[:0], false
		}
	}
}

// readOutput reads an output file the job wrote: a regular file (never through a symlink,
// which could point at this host's files), at most MaxOutputBytes, one trailing newline
// removed.
func readOutput(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("the command wrote no file %s", filepath.Join(OutputsDir, filepath.Base(path)))
	}
	if err != nil {
		return "", fmt.Errorf("not a regular file: %w", err)
	}
	defer func() { _ = f.Close() }()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxOutputBytes+1))
	if err != nil {
		return "", err
	}
	if len(b) > MaxOutputBytes {
		return "", fmt.Errorf("larger than %d bytes", MaxOutputBytes)
	}
	return string(bytes.TrimSuffix(b, []byte("\n"))), nil
}
