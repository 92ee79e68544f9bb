package step_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/cputime"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// bomb reads a definition of testdata/bombs.
func bomb(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/bombs/" + name + ".cue")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A step whose definition builds a huge list fails, naming the memory bound and its flag,
// while another step of the same Runner completes; the evaluator that held it ended before
// its memory went far past the bound, and this process never held it.
func TestMemoryBombFailsOnlyItsStep(t *testing.T) {
	const limit = 256 << 20
	r := step.NewRunner(step.Options{EvalMemory: limit, EvalTimeout: 2 * time.Minute, Definitions: defs{
		"bomb": bomb(t, "memory"),
		"fine": "parameter: {}\nout: 1\n",
	}})
	var wg sync.WaitGroup
	var fine *engine.StepResult
	var fineErr error
	wg.Go(func() {
		time.Sleep(100 * time.Millisecond)
		fine, fineErr = r.RunStep(context.Background(), request("fine", nil))
	})
	res, err := r.RunStep(context.Background(), request("bomb", nil))
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != engine.Failed || !strings.Contains(res.Message, "used more than 256 MiB, the limit of one evaluation") ||
		!strings.Contains(res.Message, "--eval-memory") {
		t.Errorf("the bomb: %v %q", res.Outcome, res.Message)
	}
	if fineErr != nil || fine.Outcome != engine.Succeeded {
		t.Errorf("the other step: %+v %v", fine, fineErr)
	}
	var children, self syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		t.Fatal(err)
	}
	// Maxrss is in KiB: the largest evaluator ever waited for, and this process.
	if rss := children.Maxrss << 10; rss > 3*limit && !raceDetector {
		t.Errorf("an evaluator reached %d MiB of RSS, bound %d MiB", rss>>20, limit>>20)
	}
	if rss := self.Maxrss << 10; rss > 2*limit && !raceDetector {
		t.Errorf("the test process reached %d MiB of RSS", rss>>20)
	}
	// The next evaluation of the same step type gets a fresh evaluator and is bounded again.
	if res, err := r.RunStep(context.Background(), request("fine", nil)); err != nil || res.Outcome != engine.Succeeded {
		t.Errorf("after the bomb: %+v %v", res, err)
	}
}

// A step whose CUE runs past EvalTimeout fails naming the bound, its evaluator is killed (the
// CPU is free again: this process and its children stop using it), and the next evaluation
// works.
func TestCPUBombIsKilledAtTheTimeLimit(t *testing.T) {
	r := step.NewRunner(step.Options{EvalTimeout: time.Second, Definitions: defs{
		"bomb": bomb(t, "cpu"),
		"fine": "parameter: {}\nout: 1\n",
	}})
	started := time.Now()
	res, err := r.RunStep(context.Background(), request("bomb", map[string]any{"n": 100000000}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != engine.Failed || !strings.Contains(res.Message, "took longer than 1s, the limit of one evaluation") ||
		!strings.Contains(res.Message, "--eval-timeout") {
		t.Errorf("the bomb: %v %q", res.Outcome, res.Message)
	}
	if took := time.Since(started); took > 30*time.Second {
		t.Errorf("the step failed after %s", took)
	}
	assertCPUFree(t)
	if res, err := r.RunStep(context.Background(), request("fine", nil)); err != nil || res.Outcome != engine.Succeeded {
		t.Errorf("after the bomb: %+v %v", res, err)
	}
}

// A step's caller going away (the engine stopping, a request cancelled) kills its evaluator.
func TestCancelledEvaluationFreesTheCPU(t *testing.T) {
	r := step.NewRunner(step.Options{EvalTimeout: -1, Definitions: defs{"bomb": bomb(t, "cpu")}})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	if _, err := r.RunStep(ctx, request("bomb", map[string]any{"n": 100000000})); err == nil {
		t.Fatal("no error from a cancelled evaluation")
	}
	assertCPUFree(t)
}

// A step's `if` and an output's valueFrom are CUE too: bounded alike.
func TestConditionAndOutputBombsAreBounded(t *testing.T) {
	r := step.NewRunner(step.Options{EvalTimeout: time.Second, Definitions: defs{"fine": "parameter: {}\nout: 1\n"}})
	_, err := r.EvalIf(context.Background(), `len([for i in list.Range(0, 100000000, 1) {i * 2}]) > 0`, map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "evaluating the condition took longer than 1s") || !strings.Contains(err.Error(), "--eval-timeout") {
		t.Errorf("the condition: %v", err)
	}
	assertCPUFree(t)

	req := request("fine", nil)
	req.Step.Outputs = v1alpha1.StepOutputs{{Name: "n", ValueFrom: `len([for i in list.Range(0, 100000000, 1) {i * 2}])`}}
	res, err := r.RunStep(context.Background(), req)
	if err != nil || res.Outcome != engine.Failed || !strings.Contains(res.Message, "took longer than 1s") {
		t.Errorf("the output: %+v %v", res, err)
	}
	assertCPUFree(t)
	if ok, err := r.EvalIf(context.Background(), `context.n == 1`, map[string]any{"context": map[string]any{"n": 1}}); err != nil || !ok {
		t.Errorf("a condition after the bombs: %v %v", ok, err)
	}
}

// The checks of vet, validate and the engine (CheckProperties, Check) are bounded alike.
func TestCheckBombsAreBounded(t *testing.T) {
	r := step.NewRunner(step.Options{EvalTimeout: time.Second, Definitions: defs{"bomb": bomb(t, "cpu")}})
	err := r.CheckProperties(context.Background(), "default", "bomb", map[string]any{"n": 100000000}, nil)
	if err == nil || !strings.Contains(err.Error(), "took longer than 1s") || !strings.Contains(err.Error(), "--eval-timeout") {
		t.Errorf("checking the properties: %v", err)
	}
	assertCPUFree(t)
	err = r.Check(context.Background(), "bomb", bomb(t, "memory"))
	if err == nil || !strings.Contains(err.Error(), "--eval-") {
		t.Errorf("checking the definition: %v", err)
	}
	assertCPUFree(t)
}

// assertCPUFree checks that this process and its children use less than a third of a core
// over a second: no evaluation goes on computing.
func assertCPUFree(t *testing.T) {
	t.Helper()
	before := cpuTime(t)
	time.Sleep(time.Second)
	if used := cpuTime(t) - before; used > 300*time.Millisecond {
		t.Errorf("%s of CPU used in a second with nothing to evaluate", used)
	}
}

// cpuTime is the CPU time of this process and of its child evaluators (package cputime).
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	d, err := cputime.Live()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// describeBomb's parameter defaults to the length of a list of 10⁸ items: describing it
// (stepflow def show, the API's definition) evaluates that.
const describeBomb = `
#l: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99]
parameter: n: *len([for a in #l for b in #l for c in #l for d in #l {a}]) | int
`

// The description of a definition's parameter is evaluated under the time bound: a
// hostile parameter fails naming it, and the CPU is free again.
func TestDescribeBombIsBounded(t *testing.T) {
	r := step.NewRunner(step.Options{EvalTimeout: 2 * time.Second})
	begin := time.Now()
	_, err := r.Describe(t.Context(), describeBomb)
	if err == nil || !strings.Contains(err.Error(), "took longer than 2s, the limit of one evaluation") || !strings.Contains(err.Error(), "--eval-timeout") {
		t.Errorf("Describe: %v", err)
	}
	if d := time.Since(begin); d > 30*time.Second {
		t.Errorf("answered after %s", d)
	}
	assertCPUFree(t)
	params, err := r.Describe(t.Context(), "parameter: {url: string, method: *\"GET\" | \"POST\"}\n")
	if err != nil || len(params) != 2 || params[0].Name != "url" || !params[0].Required {
		t.Errorf("a plain parameter: %+v %v", params, err)
	}
}
