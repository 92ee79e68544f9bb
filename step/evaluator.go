// evaluator.go: the child evaluator, the same binary started again with evaluatorEnv set: its
// init takes the process over before main (or a test binary's TestMain), sets its memory
// bound, and serves the Runner's requests on stdin and stdout until stdin closes. It holds
// the CUE and nothing else: actions run in the Runner, called back by messages.

package step

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/engine"
)

// evaluatorEnv, set to "1" in a process's environment, makes it a child evaluator.
const evaluatorEnv = "STEPFLOW_CUE_EVALUATOR"

// profileEnv names a directory where each child evaluator writes a CPU profile of its life,
// evaluator-PID.pprof, when its stdin closes (its Runner's process ending closes it). Such a
// child is not killed with its Runner's thread (childAttr), so that it writes its profile. For
// developers measuring the children (docs/performance.md); not a user setting.
const profileEnv = "STEPFLOW_EVALUATOR_CPUPROFILE"

// Exit codes of a child evaluator that ended on its own.
const (
	exitMemory   = 86 // its heap passed the memory bound
	exitProtocol = 87 // a request it could not read, or a Runner of another build
)

func init() {
	if os.Getenv(evaluatorEnv) != "1" {
		return
	}
	stop := profileCPU(os.Getenv(profileEnv))
	// Read through the poller, not by a thread blocked in read(2): the runtime would hand the
	// child's one P to another thread at each wait for a message, and its monitor, seeing a
	// thread in a system call, would wake every 20 µs meanwhile.
	in := os.Stdin
	if err := syscall.SetNonblock(0, true); err == nil {
		in = os.NewFile(0, "stdin")
	}
	// Served from another goroutine: init's goroutine is locked to the main thread, so each
	// of its wake-ups (a message read, an evaluation parking) would hand the CPU from one
	// thread to another: twice the context switches per message.
	code := make(chan int)
	go func() { code <- serveEvaluator(in, os.Stdout, stop) }()
	c := <-code
	stop()
	os.Exit(c)
}

// profileCPU starts a CPU profile written to dir (none when dir is empty) and returns what
// ends it.
func profileCPU(dir string) (stop func()) {
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("evaluator-%d.pprof", os.Getpid())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "stepflow evaluator: no CPU profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "stepflow evaluator: no CPU profile:", err)
		_ = f.Close()
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		})
	}
}

// serveEvaluator serves one Runner: a hello, then requests one at a time, in the order they
// came; the requests are read meanwhile (inbox), so that those taken back are answered while
// one computes. It returns the process's exit code; ending is called before the process ends
// on its own otherwise (its Runner gone).
func serveEvaluator(in io.Reader, out io.Writer, ending func()) int {
	dec := json.NewDecoder(bufio.NewReaderSize(in, 64<<10))
	w := bufio.NewWriterSize(out, 64<<10)
	ch := &childSide{w: w, enc: json.NewEncoder(w), sources: map[string]string{}, parked: map[uint64]chan request{}}
	ch.enc.SetEscapeHTML(false)
	var first request
	if err := dec.Decode(&first); err != nil || first.Hello == nil || first.Hello.Version != wireVersion {
		fmt.Fprintln(os.Stderr, "stepflow evaluator: no hello of this build")
		return exitProtocol
	}
	// One evaluation at a time: one thread runs it; more would spin looking for work between
	// the messages, which costs CPU and gains nothing.
	runtime.GOMAXPROCS(1)
	h := first.Hello
	if h.Memory > 0 {
		limitMemory(h.Memory)
		go watchMemory(h.Memory, os.Getppid(), ending)
	}
	reg := NewRegistry()
	for _, p := range h.Packages {
		reg.AddPackage(p)
	}
	for _, a := range h.Actions {
		reg.Register(Action{Provider: a.Provider, Do: a.Do, LegacyResult: a.LegacyResult, LegacyOutputs: a.LegacyOutputs,
			AcceptIncomplete: a.AcceptIncomplete, Run: func(context.Context, *Call) (any, error) {
				return nil, errors.New("runs in the Runner") // never called: childSide.act calls the Runner
			}})
	}
	ch.r = NewRunner(Options{Registry: reg, InProcess: true, ContextLifetime: h.ContextLifetime,
		MaxDefinitions: h.MaxDefinitions, MaxActions: h.MaxActions, EvalTimeout: -1})
	if err := ch.send(reply{}); err != nil { // ready
		return exitProtocol
	}
	q := &inbox{ready: make(chan struct{}, 1)}
	go q.fill(ch, dec)
	for {
		req, err := q.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			fmt.Fprintln(os.Stderr, "stepflow evaluator: reading a request:", err)
			return exitProtocol
		}
		if !ch.serve(&req) {
			return exitProtocol
		}
	}
}

// inbox holds the requests a child read and has not begun.
type inbox struct {
	mu    sync.Mutex
	queue []request
	err   error         // the end of the input
	ready chan struct{} // a signal (one buffered) that queue or err changed
}

// fill reads requests into the inbox until the input ends, answering a withdrawal at once:
// each request it names still in the inbox is dropped and answered Withdrawn.
func (q *inbox) fill(ch *childSide, dec *json.Decoder) {
	for {
		var req request
		err := dec.Decode(&req)
		q.mu.Lock()
		if err != nil {
			q.err = err
			q.mu.Unlock()
			q.signal()
			return
		}
		if req.Withdraw == nil {
			q.queue = append(q.queue, req)
			q.mu.Unlock()
			q.signal()
			continue
		}
		var taken []uint64
		q.queue = slices.DeleteFunc(q.queue, func(r request) bool {
			if !r.Abort && slices.Contains(req.Withdraw, r.ID) {
				taken = append(taken, r.ID)
				return true
			}
			return false
		})
		q.mu.Unlock()
		for _, id := range taken {
			if ch.write(reply{ID: id, Withdrawn: true}) != nil {
				q.mu.Lock()
				q.err = errors.New("a reply could not be written")
				q.mu.Unlock()
				q.signal()
				return
			}
		}
	}
}

func (q *inbox) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// next returns the first request not begun, waiting for one; an error once the input ended
// and every request was served.
func (q *inbox) next() (request, error) {
	for {
		q.mu.Lock()
		if len(q.queue) > 0 {
			req := q.queue[0]
			q.queue[0] = request{}
			q.queue = q.queue[1:]
			q.mu.Unlock()
			return req, nil
		}
		err := q.err
		q.mu.Unlock()
		if err != nil {
			return request{}, err
		}
		<-q.ready
	}
}

// serve answers one request: a step starts its evaluation (which answers with its first
// action or its end), an answer to an action resumes the evaluation parked at it, and
// conditions and checks are answered at once. False when the reply could not be written.
func (ch *childSide) serve(req *request) bool {
	ch.cpu.Lock()
	defer ch.cpu.Unlock()
	var rep reply
	switch {
	case req.Step != nil:
		src, ok := ch.source(req.Step.source)
		if !ok {
			rep = reply{Missing: true}
			break
		}
		in := make(chan request, 1)
		ch.parked[req.ID] = in
		started := make(chan struct{})
		go ch.step(req.ID, req.Step, src, in, started)
		ch.cpu.Unlock()
		<-started // it holds cpu until it parks or ends
		ch.cpu.Lock()
		return !ch.broken
	case req.Acted != nil || req.Abort:
		in, ok := ch.parked[req.ID]
		if !ok {
			rep = reply{Failure: &wireFailure{Message: "no evaluation " + strconv.FormatUint(req.ID, 10)}}
			break
		}
		started := make(chan struct{})
		ch.resumed = started
		in <- *req
		ch.cpu.Unlock()
		<-started
		ch.cpu.Lock()
		return !ch.broken
	case req.If != nil:
		rep = ch.condition(req.If)
	case req.Check != nil:
		rep = ch.check(req.Check)
	case req.X != nil:
		rep = reply{X: xCheck(req.X)}
	case req.Describe != nil:
		d := &described{}
		var err error
		if d.Parameters, err = describeParameter(*req.Describe); err != nil {
			d.Error = err.Error()
		}
		rep = reply{Described: d}
	case req.Render != nil:
		rep = reply{Rendered: renderJob(req.Render)}
	case req.Health != nil:
		rep = reply{Judged: healthJob(req.Health)}
	default:
		rep = reply{Failure: &wireFailure{Message: "unexpected request"}}
	}
	rep.ID = req.ID
	return ch.send(rep) == nil
}

// childSide is a child evaluator's state: its Runner, evaluating in process, and the
// definitions' sources it was sent.
type childSide struct {
	// cpu is held by what computes: serve, or the evaluation it started or resumed, until
	// that one parks at an action or ends.
	cpu     sync.Mutex
	parked  map[uint64]chan request // the evaluations under way, by ID
	resumed chan struct{}           // closed by the evaluation resumed once it holds cpu
	broken  bool                    // a reply could not be written
	r       *Runner
	wmu     sync.Mutex // held while a reply is written: by what computes, or by inbox.fill
	w       *bufio.Writer
	enc     *json.Encoder
	sources map[string]string
	marked  []string // sensitive values not sent yet
}

// maxSources bounds the definitions' sources a child keeps; past it they are forgotten and
// sent again when needed.
const maxSources = 1024

// send writes a reply of what computes (it holds cpu), with the sensitive values marked since
// the last.
func (ch *childSide) send(rep reply) error {
	rep.Sensitive, ch.marked = ch.marked, nil
	return ch.write(rep)
}

// write writes a reply.
func (ch *childSide) write(rep reply) error {
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	if err := ch.enc.Encode(rep); err != nil {
		return err
	}
	return ch.w.Flush()
}

// source returns the source of s, from s or from those sent before; false when unknown.
func (ch *childSide) source(s source) (string, bool) {
	if s.Source != "" {
		if len(ch.sources) >= maxSources {
			clear(ch.sources)
		}
		ch.sources[s.Key] = s.Source
		return s.Source, true
	}
	src, ok := ch.sources[s.Key]
	return src, ok
}

// step evaluates a step in its own goroutine, calling the Runner for each action (act), and
// sends its end. It takes cpu before it closes started, and holds it while it computes.
func (ch *childSide) step(id uint64, req *stepRequest, src string, in chan request, started chan struct{}) {
	ch.cpu.Lock()
	close(started)
	a := &childEval{ch: ch, id: id, in: in}
	rep := reply{Done: a.step(req, src)}
	delete(ch.parked, id)
	rep.ID = id
	if ch.send(rep) != nil {
		ch.broken = true
	}
	ch.cpu.Unlock()
}

// childEval is the actor of one evaluation in a child: its messages to the Runner.
type childEval struct {
	ch *childSide
	id uint64
	in chan request // the Runner's answers to its actions
}

// step evaluates the step.
func (a *childEval) step(req *stepRequest, src string) *stepDone {
	ch := a.ch
	gen := ch.r.generation()
	d, err := ch.r.compile(gen, req.Type, src)
	done := &stepDone{}
	if err == nil {
		done.LoneSuspend = d.info.lone()
		var cx map[string]any
		if len(req.Context) > 0 {
			err = json.Unmarshal(req.Context, &cx)
		}
		if err == nil {
			c := &cueEval{r: ch.r, gen: gen, def: d, props: req.Properties, context: cx, wants: req.Outputs, act: a}
			err = c.run(context.Background())
			done.Outputs = c.results
		}
	}
	var f *failure
	var te *engine.TerminalError
	switch {
	case err == nil:
	case errors.Is(err, errAborted):
		done.Aborted = true
	case errors.As(err, &f):
		done.Failure = &wireFailure{Reason: f.reason, Message: f.msg}
	case errors.As(err, &te):
		done.Terminal = &wireFailure{Reason: te.Reason, Message: te.Err.Error()}
	default:
		done.Error = err.Error()
	}
	return done
}

// errAborted ends an evaluation in a child whose action failed in the Runner, which returns
// the action's error itself.
var errAborted = errors.New("the action failed")

// act implements actor: the Runner runs the action and answers with what to fill back. The
// evaluation parks meanwhile: it gives cpu up, so that the child computes others.
func (a *childEval) act(_ context.Context, c *actionCall) (acted, error) {
	ch := a.ch
	if err := ch.send(reply{ID: a.id, Action: c}); err != nil {
		ch.broken = true
		return acted{}, err
	}
	ch.cpu.Unlock()
	req := <-a.in
	ch.cpu.Lock()
	close(ch.resumed)
	if req.Acted == nil {
		return acted{}, errAborted
	}
	return *req.Acted, nil
}

// sensitive implements actor: the values go with the next reply, before the action that
// could show them runs.
func (a *childEval) sensitive(values ...string) { a.ch.marked = append(a.ch.marked, values...) }

// condition evaluates an `if`, or a cache key.
func (ch *childSide) condition(req *ifRequest) reply {
	if req.Key && req.Compile {
		if _, err := ch.r.generation().expression("$key", keyScopes, req.Expr); err != nil {
			return reply{If: &ifDone{Error: err.Error()}}
		}
		return reply{If: &ifDone{}}
	}
	var scope map[string]any
	if err := json.Unmarshal(req.Scope, &scope); err != nil {
		return reply{If: &ifDone{Error: "reading the scope: " + err.Error()}}
	}
	if req.Key {
		k, err := ch.r.evalKey(scope, req.Expr)
		if err != nil {
			return reply{If: &ifDone{Error: err.Error()}}
		}
		return reply{If: &ifDone{Key: k}}
	}
	b, err := ch.r.evalIf(scope, req.Expr)
	if err != nil {
		return reply{If: &ifDone{Error: err.Error()}}
	}
	return reply{If: &ifDone{Value: b}}
}

// check compiles a definition or checks properties against it.
func (ch *childSide) check(req *checkRequest) reply {
	src, ok := ch.source(req.source)
	if !ok {
		return reply{Missing: true}
	}
	gen := ch.r.generation()
	var err error
	if req.Compile {
		if d := gen.definition(ch.r.opts.Registry, req.Type, src); d.err != nil {
			err = d.err
		}
	} else {
		var props map[string]any
		if props, err = readProperties(req.Properties); err == nil {
			err = ch.r.checkCompiled(gen, req.Type, src, req.Namespace, props, req.Filled)
		}
	}
	if pe, ok := errors.AsType[PropertyErrors](err); ok {
		return reply{Check: &checkDone{Properties: pe}}
	}
	if err != nil {
		return reply{Check: &checkDone{Error: err.Error()}}
	}
	return reply{Check: &checkDone{}}
}

// xCheck checks an X-Definition's CUE with package application, in this process (a child
// evaluator's, or the Runner's evaluating in process).
func xCheck(req *xRequest) *xDone {
	if req.Compile {
		if err := application.CheckTemplate(req.Template); err != nil {
			return &xDone{Error: err.Error()}
		}
		return &xDone{}
	}
	return &xDone{Properties: application.CheckProperties(req.Template, req.Properties, req.Filled)}
}

// limitMemory has the Go runtime collect garbage harder as the heap nears the bound, so that
// only what an evaluation holds counts towards it, and sets the address-space backstop.
func limitMemory(limit int64) {
	// A child's live heap is small (the compiled packages and definitions, the evaluation
	// under way) beside what each evaluation allocates: at the default GOGC it would collect
	// every few evaluations, each time marking all it keeps. Collecting at 4× the live heap
	// costs less CPU per evaluation; the bound stays on what is live.
	debug.SetGCPercent(400)
	debug.SetMemoryLimit(limit)
	setAddressSpaceLimit(limit)
}

// watchMemory ends the process with exitMemory once the live heap (as of the last collection)
// or the memory the runtime holds passes the bound, and ends it when the Runner's process
// is gone (a child evaluating does not read its stdin), calling ending first.
func watchMemory(limit int64, parent int, ending func()) {
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	for range time.Tick(10 * time.Millisecond) {
		metrics.Read(samples)
		live := int64(samples[0].Value.Uint64())
		held := int64(samples[1].Value.Uint64() - samples[2].Value.Uint64())
		if live > limit || held > limit+limit/2 {
			fmt.Fprintf(os.Stderr, "stepflow evaluator: memory bound of %d bytes passed\n", limit)
			os.Exit(exitMemory)
		}
		if os.Getppid() != parent {
			ending()
			os.Exit(exitProtocol)
		}
	}
}
