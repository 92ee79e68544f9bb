package sqlite_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store/sqlite"
	"github.com/stepflow/stepflow/store/storetest"
)

// crashEnv, set to a database path, makes the test binary a child that saves into it until
// it is killed.
const crashEnv = "STEPFLOW_SQLITE_CRASH_CHILD"

const crashRuns = 8

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		fmt.Fprintln(os.Stderr, saveUntilKilled(path))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// saveUntilKilled saves crashRuns runs over and over, from one goroutine each, and prints
// "run save version" after each Save returns.
func saveUntilKilled(path string) error {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: path})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	errc := make(chan error, crashRuns)
	for i := range crashRuns {
		go func() {
			run := storetest.NewRun("crash", fmt.Sprintf("run-%d", i))
			for j := 0; ; j++ {
				run.Object.Status.Message = strconv.Itoa(j)
				if err := st.Save(ctx, run, []engine.LogEntry{{Step: "fetch", Message: strconv.Itoa(j)}}); err != nil {
					errc <- err
					return
				}
				mu.Lock()
				fmt.Printf("%d %d %d\n", i, j, run.Version)
				mu.Unlock()
			}
		}()
	}
	return <-errc
}

// TestKilledProcessKeepsAcknowledgedSaves kills (SIGKILL) a process in the middle of saving
// and checks that every save it was told had succeeded is there, with its log, and nothing
// is half-written.
func TestKilledProcessKeepsAcknowledgedSaves(t *testing.T) {
	path := tempPath(t)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type ack struct{ save, version int64 }
	acked := map[int]ack{}
	sc := bufio.NewScanner(stdout)
	for n := 0; n < 400 && sc.Scan(); n++ {
		var run int
		var a ack
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %d", &run, &a.save, &a.version); err != nil {
			t.Fatalf("child said %q: %v", sc.Text(), err)
		}
		acked[run] = a
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) == 0 {
		t.Fatalf("the child acknowledged no save; its stderr: %s", stderr.String())
	}

	st := open(t, path)
	for i, a := range acked {
		key := engine.Key{Namespace: "crash", Name: fmt.Sprintf("run-%d", i)}
		run, err := st.Load(t.Context(), key)
		if err != nil {
			t.Errorf("%s: acknowledged save %d lost: %v", key, a.save, err)
			continue
		}
		save, err := strconv.ParseInt(run.Object.Status.Message, 10, 64)
		if err != nil || save < a.save || run.Version < a.version {
			t.Errorf("%s: stored save %q at version %d, but save %d at version %d was acknowledged",
				key, run.Object.Status.Message, run.Version, a.save, a.version)
		}
		// The log holds exactly the entries of the saves stored: one each, in order.
		logs, err := st.Logs(t.Context(), key, "")
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(logs)) != save+1 {
			t.Errorf("%s: %d log entries for %d saves", key, len(logs), save+1)
			continue
		}
		for k, e := range logs {
			if e.Message != strconv.Itoa(k) {
				t.Errorf("%s: log entry %d is %q", key, k, e.Message)
				break
			}
		}
	}
	checkIntegrity(t, path)
}
