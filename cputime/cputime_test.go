package cputime_test

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/stepflow/stepflow/cputime"
)

// In Total, the CPU a child spent counts once it has ended and been waited for.
func TestTotalCountsChildren(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if os.Getenv("CPUTIME_SPIN") == "1" {
		// Spin until this child has used 300ms of CPU, however loaded the machine is.
		for {
			if d, err := cputime.Live(); err != nil || d >= 300*time.Millisecond {
				return
			}
		}
	}
	before, err := cputime.Total()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run", "^TestTotalCountsChildren$")
	cmd.Env = append(os.Environ(), "CPUTIME_SPIN=1")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	after, err := cputime.Total()
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < 250*time.Millisecond {
		t.Errorf("a child that used 300ms of CPU added %s", d)
	}
}
