package step_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// gate is a real HTTP server on loopback whose GET /hold answers once `want` requests are in
// flight together, or after `most`; POST /start counts the side effects made.
type gate struct {
	*httptest.Server
	want    int
	most    time.Duration
	posts   atomic.Int32
	mu      sync.Mutex
	inside  int
	maxIn   int
	release chan struct{}
	open    func()
}

func newGate(t *testing.T, want int, most time.Duration) *gate {
	g := &gate{want: want, most: most, release: make(chan struct{})}
	g.open = sync.OnceFunc(func() { close(g.release) })
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			g.posts.Add(1)
			_, _ = w.Write([]byte(`{"id":"job"}`))
			return
		}
		g.mu.Lock()
		g.inside++
		g.maxIn = max(g.maxIn, g.inside)
		if g.inside == g.want {
			g.open()
		}
		g.mu.Unlock()
		select {
		case <-g.release:
		case <-time.After(g.most):
		}
		g.mu.Lock()
		g.inside--
		g.mu.Unlock()
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gate) inFlight() (now, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inside, g.maxIn
}

const postThenHold = `
import (
	"encoding/json"
	"vela/op"
)
parameter: base: string
start: op.#HTTPPost & {url: parameter.base + "/start", request: body: "{}"}
job: json.Unmarshal(start.response.body)
hold: op.#HTTPGet & {url: parameter.base + "/hold?job=" + job.id, request: timeout: "2m"}
state: json.Unmarshal(hold.response.body)
`

// Steps waiting for their actions do not hold the evaluators: 20 steps whose request to a
// slow server is in flight all at once with two evaluators, where each evaluator held one
// step until its request answered (two in flight at a time).
func TestStepsWaitingForActionsShareEvaluators(t *testing.T) {
	const steps = 20
	g := newGate(t, steps, 3*time.Second)
	r, _ := newRunnerWith(t, step.Options{Evaluators: 2, Definitions: defs{"slow": postThenHold}})
	var wg sync.WaitGroup
	results := make([]*engine.StepResult, steps)
	errs := make([]error, steps)
	for i := range steps {
		wg.Go(func() {
			results[i], errs[i] = r.RunStep(context.Background(), request("slow", map[string]any{"base": g.URL}))
		})
	}
	wg.Wait()
	for i := range steps {
		if errs[i] != nil || results[i].Outcome != engine.Succeeded {
			t.Fatalf("step %d: %+v %v", i, results[i], errs[i])
		}
	}
	if _, most := g.inFlight(); most != steps {
		t.Errorf("at most %d requests in flight together, want %d: the evaluators were held while the actions ran", most, steps)
	}
}

// A memory bomb evaluated in the child that holds other steps parked at their actions fails
// alone, naming the bound; the parked steps start again in another child and succeed, and
// the POST each made before the child died is not made again (it replays from the memo).
func TestMemoryBombSparesTheStepsParkedWithIt(t *testing.T) {
	parkedWith(t, step.Options{EvalMemory: 256 << 20, EvalTimeout: 2 * time.Minute}, func(r *step.Runner) {
		res, err := r.RunStep(context.Background(), request("bomb", nil))
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != engine.Failed || !strings.Contains(res.Message, "used more than 256 MiB, the limit of one evaluation") {
			t.Errorf("the bomb: %v %q", res.Outcome, res.Message)
		}
	}, bomb(t, "memory"))
}

// A step cancelled while its CUE computes has its child killed (as at its time bound); the
// steps parked in that child start again in another and succeed, their POSTs not repeated.
func TestKillingAChildSparesTheStepsParkedInIt(t *testing.T) {
	parkedWith(t, step.Options{EvalTimeout: 2 * time.Minute}, func(r *step.Runner) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(500*time.Millisecond, cancel)
		if _, err := r.RunStep(ctx, request("bomb", map[string]any{"n": 100000000})); err == nil {
			t.Error("no error from the cancelled step")
		}
	}, bomb(t, "cpu"))
}

// parkedWith parks three steps in the one child evaluator of a Runner (each made a POST and
// waits for its GET), runs breaker, which evaluates the definition bomb in that child, then
// lets the GETs answer: the three steps must succeed with one POST each.
func parkedWith(t *testing.T, opts step.Options, breaker func(*step.Runner), bomb string) {
	const parked = 3
	g := newGate(t, parked+1, 2*time.Minute) // released below
	opts.Evaluators = 1
	opts.Definitions = defs{"slow": postThenHold, "bomb": bomb}
	r, _ := newRunnerWith(t, opts)
	var wg sync.WaitGroup
	results := make([]*engine.StepResult, parked)
	errs := make([]error, parked)
	for i := range parked {
		wg.Go(func() {
			results[i], errs[i] = r.RunStep(context.Background(), request("slow", map[string]any{"base": g.URL}))
		})
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if now, _ := g.inFlight(); now == parked {
			break
		}
		if time.Now().After(deadline) {
			g.open()
			t.Fatal("the steps did not reach their GET")
		}
	}
	breaker(r)
	g.open()
	wg.Wait()
	for i := range parked {
		switch {
		case errs[i] != nil:
			t.Errorf("parked step %d: %v", i, errs[i])
		case results[i].Outcome != engine.Succeeded:
			t.Errorf("parked step %d: %v %q", i, results[i].Outcome, results[i].Message)
		}
	}
	if n := g.posts.Load(); n != parked {
		t.Errorf("%d POSTs, want %d: a side effect ran again", n, parked)
	}
}
