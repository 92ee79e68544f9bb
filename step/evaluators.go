// evaluators.go: the Runner's child evaluators (pool, child): processes of this same binary
// that do the CUE of evaluations, each under a memory bound, killed when their caller goes
// away or the time bound passes, and started again as needed. Actions run in the Runner: a
// child asks for each one and waits for its result.

package step

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Defaults of the child evaluators.
const (
	// DefaultEvalMemory is Options.EvalMemory when it is zero.
	DefaultEvalMemory = 512 << 20
	// evaluatorIdle is how long an unused child evaluator is kept.
	evaluatorIdle = 30 * time.Second
	// maxInfos bounds the definitions whose defInfo the pool keeps.
	maxInfos = 4096
)

// DefaultEvaluators is Options.Evaluators when it is zero: four per core, at least eight. A
// child is held by its evaluation while the evaluation's actions run, so there are more
// children than cores; Options.MaxEvaluating bounds those evaluating at once.
func DefaultEvaluators() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

// pool holds a Runner's child evaluators.
type pool struct {
	exe    string
	hello  []byte
	memory int64
	slots  chan struct{} // one per child started and not ended

	mu    sync.Mutex
	idle  []*child
	reap  *time.Timer
	infos map[[32]byte]*defInfo
	// opts are the runner's options, for ObserveBound.
	opts *Options
}

func newPool(opts Options) *pool {
	h := hello{Version: wireVersion, ContextLifetime: opts.ContextLifetime, MaxDefinitions: opts.MaxDefinitions,
		MaxActions: opts.MaxActions, Memory: opts.EvalMemory}
	for _, path := range opts.Registry.PackagePaths() {
		p, _ := opts.Registry.Package(path)
		h.Packages = append(h.Packages, p)
	}
	for _, a := range opts.Registry.Actions() {
		if a.Run != nil {
			h.Actions = append(h.Actions, actionShape{Provider: a.Provider, Do: a.Do, LegacyResult: a.LegacyResult,
				LegacyOutputs: a.LegacyOutputs, AcceptIncomplete: a.AcceptIncomplete})
		}
	}
	b, _ := json.Marshal(request{Hello: &h})
	exe := "/proc/self/exe" // this binary, even when the file was replaced since
	if _, err := os.Stat(exe); err != nil {
		exe, _ = os.Executable()
	}
	return &pool{exe: exe, hello: append(b, '\n'), memory: opts.EvalMemory, slots: make(chan struct{}, opts.Evaluators),
		infos: map[[32]byte]*defInfo{}, opts: &opts}
}

// info returns what the Runner keeps of the definition of key.
func (p *pool) info(key [32]byte) *defInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i, ok := p.infos[key]; ok {
		return i
	}
	if len(p.infos) >= maxInfos {
		clear(p.infos)
	}
	i := &defInfo{}
	p.infos[key] = i
	return i
}

// get returns an idle child, or starts one, waiting while Options.Evaluators are in use.
func (p *pool) get(ctx context.Context) (*child, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !c.ended() {
			p.mu.Unlock()
			return c, nil
		}
	}
	p.mu.Unlock()
	c, err := p.start(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

// put gives back a child that served its request; one that ended, or whose request was cut
// off, is ended and forgotten.
func (p *pool) put(c *child, healthy bool) {
	if !healthy || c.ended() {
		c.kill()
		<-p.slots
		return
	}
	c.used = time.Now()
	p.mu.Lock()
	p.idle = append(p.idle, c)
	if p.reap == nil {
		p.reap = time.AfterFunc(evaluatorIdle, p.reapIdle)
	}
	p.mu.Unlock()
	<-p.slots
}

// reapIdle ends the children unused for evaluatorIdle.
func (p *pool) reapIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := p.idle[:0]
	for _, c := range p.idle {
		if time.Since(c.used) >= evaluatorIdle {
			c.stop()
		} else {
			keep = append(keep, c)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.reap = nil
	if len(p.idle) > 0 {
		p.reap = time.AfterFunc(evaluatorIdle, p.reapIdle)
	}
}

// child is one child evaluator process.
type child struct {
	cmd    *exec.Cmd
	in     *os.File
	enc    *json.Encoder
	dec    *json.Decoder
	stderr *tail
	sent   map[[32]byte]bool // the definitions sent to it
	used   time.Time
	done   chan struct{} // closed once the process ended
	killed bool          // by kill
	mu     sync.Mutex
}

// start starts a child evaluator, sends it the hello and waits for it to be ready.
func (p *pool) start(ctx context.Context) (*child, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting a CUE evaluator: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		_ = inR.Close()
		_ = inW.Close()
		return nil, fmt.Errorf("starting a CUE evaluator: %w", err)
	}
	// The child outlives the request that started it: it serves the next ones.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), p.exe)
	cmd.Env = append(os.Environ(), evaluatorEnv+"=1")
	cmd.Stdin, cmd.Stdout = inR, outW
	c := &child{cmd: cmd, in: inW, enc: json.NewEncoder(inW), dec: json.NewDecoder(outR), stderr: &tail{}, sent: map[[32]byte]bool{}, done: make(chan struct{})}
	c.enc.SetEscapeHTML(false)
	cmd.Stderr = c.stderr
	cmd.SysProcAttr = childAttr()
	err = cmd.Start()
	_ = inR.Close()
	_ = outW.Close()
	if err != nil {
		_ = inW.Close()
		_ = outR.Close()
		return nil, fmt.Errorf("starting a CUE evaluator: %w", err)
	}
	go func() {
		_ = cmd.Wait()
		_ = outR.Close()
		close(c.done)
	}()
	ready := make(chan error, 1)
	go func() {
		if _, err := inW.Write(p.hello); err != nil {
			ready <- err
			return
		}
		var rep reply
		ready <- c.dec.Decode(&rep)
	}()
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = errors.New("not ready after a minute")
	}
	if err != nil {
		c.kill()
		<-c.done
		if line := lastLine(c.stderr.String()); line != "" {
			err = fmt.Errorf("%w: %s", err, line)
		}
		return nil, fmt.Errorf("starting a CUE evaluator: %w", err)
	}
	return c, nil
}

func (c *child) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill ends the child at once (SIGKILL), whatever it is doing.
func (c *child) kill() {
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
	_ = c.cmd.Process.Kill()
	_ = c.in.Close()
}

// stop ends an idle child: it exits when its stdin closes.
func (c *child) stop() { _ = c.in.Close() }

// errEncoding is a request that could not be encoded: the child is well.
type errEncoding struct{ err error }

func (e *errEncoding) Error() string {
	return "encoding a request to the CUE evaluator: " + e.err.Error()
}

// exchange sends req and reads the reply. On an error the child is to be ended.
func (c *child) exchange(req *request, rep *reply) error {
	b, err := json.Marshal(req)
	if err != nil {
		return &errEncoding{err}
	}
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		return err
	}
	*rep = reply{}
	return c.dec.Decode(rep)
}

// session is one request to a child and its replies, under the caller's context and the time
// bound: when either ends, the child is killed, which ends the exchange.
type session struct {
	p     *pool
	c     *child
	ctx   context.Context
	what  string // what is evaluated, for messages: "the step"
	limit time.Duration
	stop  func() bool
}

// begin takes a child for a request about what. The time bound is the caller's (the
// evaluation of a step has its own, bounded) or, when limit is positive, limit.
func (p *pool) begin(ctx context.Context, what string, limit time.Duration) (*session, func(), error) {
	c, err := p.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	s, cancel := p.with(ctx, c, what, limit)
	return s, cancel, nil
}

// with is begin with the child c, taken before.
func (p *pool) with(ctx context.Context, c *child, what string, limit time.Duration) (*session, func()) {
	cancel := func() {}
	if limit > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, limit, errEvalTimeout)
	}
	s := &session{p: p, c: c, ctx: ctx, what: what, limit: limit}
	s.stop = context.AfterFunc(ctx, c.kill)
	return s, cancel
}

// end gives the child back, healthy unless the exchange failed or it was killed.
func (s *session) end(healthy bool) {
	if !s.stop() {
		healthy = false // killed
	}
	s.p.put(s.c, healthy)
}

// send sends a request naming the definition src (key: the hash of its type and text, from
// definitionKey), with its text when the child may not have
// it, and reads the reply; a reply asking for the text has it sent. An error names why the
// child did not answer: the end of the caller's context, the time bound, or the child's end.
func (s *session) send(req *request, src *source, key [32]byte, text string, rep *reply) error {
	src.Key = hex.EncodeToString(key[:])
	if !s.c.sent[key] {
		src.Source = text
	}
	if err := s.exchange(req, rep); err != nil {
		return err
	}
	if rep.Missing {
		src.Source = text
		if err := s.exchange(req, rep); err != nil {
			return err
		}
	}
	s.c.sent[key] = true
	src.Source = ""
	return nil
}

// exchange sends req and reads the reply, explaining a child that did not answer.
func (s *session) exchange(req *request, rep *reply) error {
	if err := s.c.exchange(req, rep); err != nil {
		return s.why(err)
	}
	if rep.Failure != nil {
		return fmt.Errorf("CUE evaluator: %s", rep.Failure.Message)
	}
	return nil
}

// why explains the end of an exchange with the child: the caller's context ended (its error),
// the time bound passed, or the child ended (the memory bound, or a crash), each a *failure
// naming the bound and its flag.
func (s *session) why(err error) error {
	if _, ok := errors.AsType[*errEncoding](err); ok {
		return err
	}
	if s.ctx.Err() != nil {
		if errors.Is(context.Cause(s.ctx), errEvalTimeout) {
			if s.limit > 0 {
				return &failure{reason: v1alpha1.ReasonExecute, msg: fmt.Sprintf(
					"evaluating %s took longer than %s, the limit of one evaluation (step.Options.EvalTimeout, --eval-timeout)", s.what, s.limit)}
			}
			return context.Cause(s.ctx)
		}
		return s.ctx.Err()
	}
	hung := false // killed here after not ending: not a death by another's signal
	select {
	case <-s.c.done:
	case <-time.After(5 * time.Second):
		s.c.kill()
		<-s.c.done
		hung = true
	}
	code := s.c.cmd.ProcessState.ExitCode()
	text := s.c.stderr.String()
	if code == exitMemory || strings.Contains(text, "out of memory") {
		s.p.opts.bound("memory")
		return &failure{reason: v1alpha1.ReasonExecute, msg: fmt.Sprintf(
			"evaluating %s used more than %s, the limit of one evaluation (step.Options.EvalMemory, --eval-memory)", s.what, size(s.p.memory))}
	}
	if st, ok := s.c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() {
		if hung {
			s.p.opts.bound("crash")
		} else {
			s.p.opts.bound("signal")
		}
		return &failure{reason: v1alpha1.ReasonExecute, msg: fmt.Sprintf(
			"evaluating %s: the CUE evaluator was ended by signal %s (the system's memory limit?)", s.what, st.Signal())}
	}
	s.p.opts.bound("crash")
	if line := lastLine(text); line != "" {
		return &failure{reason: v1alpha1.ReasonExecute, msg: fmt.Sprintf("evaluating %s: the CUE evaluator failed: %s", s.what, line)}
	}
	return fmt.Errorf("evaluating %s: the CUE evaluator ended (exit code %d): %w", s.what, code, err)
}

// step evaluates the CUE of e in its child (e.child, which it takes), running its actions
// here.
func (p *pool) step(ctx context.Context, e *evaluation) (err error) {
	s, cancel := p.with(ctx, e.child, "the step", 0)
	e.child = nil
	defer cancel()
	props := e.req.Properties
	if len(props) > 0 && !json.Valid(props) { // not sent: it would not encode
		if _, err := readProperties(props); err != nil {
			s.end(true)
			return failf(v1alpha1.ReasonParameter, "properties: %v", err)
		}
		props = nil // white space
	}
	healthy := false
	defer func() { s.end(healthy) }()
	cx, err := json.Marshal(e.req.Context)
	if err != nil {
		return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("encoding the context: %w", err))
	}
	sr := &stepRequest{source: source{Type: e.t.typ}, Properties: props, Context: cx, Outputs: e.req.Step.Outputs}
	var rep reply
	if err := s.send(&request{Step: sr}, &sr.source, e.t.key, e.t.src, &rep); err != nil {
		return err
	}
	var actErr error // the error of the action that ended the evaluation, returned as it is
	for rep.Action != nil {
		e.Sensitive(rep.Sensitive...)
		if err := ctx.Err(); err != nil {
			return err // cancelled between actions: the next does not run (the child is killed)
		}
		out, err := e.act(ctx, rep.Action)
		req := &request{Acted: &out}
		if err != nil {
			actErr, req = err, &request{Abort: true}
		}
		if err := s.exchange(req, &rep); err != nil {
			return err
		}
	}
	e.Sensitive(rep.Sensitive...)
	d := rep.Done
	if d == nil {
		return errors.New("CUE evaluator: an unexpected reply")
	}
	healthy = true
	e.t.info.setLone(d.LoneSuspend)
	e.res.Outputs = d.Outputs
	switch {
	case d.Aborted && actErr != nil:
		return actErr
	case d.Failure != nil:
		return &failure{reason: d.Failure.Reason, msg: d.Failure.Message}
	case d.Terminal != nil:
		return engine.Terminal(d.Terminal.Reason, errors.New(d.Terminal.Message))
	case d.Error != "":
		return errors.New(d.Error)
	}
	return nil
}

// definitionKey identifies a definition by its type and text.
func definitionKey(typ, text string) [32]byte { return sha256.Sum256([]byte(typ + "\x00" + text)) }

// condition evaluates an `if` in a child.
func (p *pool) condition(ctx context.Context, limit time.Duration, expr string, scope map[string]any) (bool, error) {
	b, err := json.Marshal(scope)
	if err != nil {
		return false, fmt.Errorf("encoding the condition's scope: %w", err)
	}
	s, cancel, err := p.begin(ctx, "the condition", limit)
	if err != nil {
		return false, err
	}
	defer cancel()
	var rep reply
	err = s.exchange(&request{If: &ifRequest{Expr: expr, Scope: b}}, &rep)
	s.end(err == nil && rep.If != nil)
	switch {
	case err != nil:
		return false, boundError(err)
	case rep.If == nil:
		return false, errors.New("CUE evaluator: an unexpected reply")
	case rep.If.Error != "":
		return false, errors.New(rep.If.Error)
	}
	return rep.If.Value, nil
}

// check compiles a definition, or checks properties against it, in a child.
func (p *pool) check(ctx context.Context, limit time.Duration, req *checkRequest, text string) error {
	what := "the definition " + req.Type
	if !req.Compile {
		what = "the properties of a step of type " + req.Type
	}
	s, cancel, err := p.begin(ctx, what, limit)
	if err != nil {
		return err
	}
	defer cancel()
	var rep reply
	err = s.send(&request{Check: req}, &req.source, definitionKey(req.Type, text), text, &rep)
	s.end(err == nil && rep.Check != nil)
	switch {
	case err != nil:
		return boundError(err)
	case rep.Check == nil:
		return errors.New("CUE evaluator: an unexpected reply")
	case len(rep.Check.Properties) > 0:
		return rep.Check.Properties
	case rep.Check.Error != "":
		return errors.New(rep.Check.Error)
	}
	return nil
}

// boundError is err, a *failure naming a bound as a plain error for the callers of checks and
// conditions.
func boundError(err error) error {
	if f, ok := errors.AsType[*failure](err); ok {
		return errors.New(f.msg)
	}
	return err
}

// tail keeps the last 4 KiB written to it: a child's stderr.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if n := len(t.buf); n > 4<<10 {
		t.buf = append(t.buf[:0], t.buf[n-4<<10:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lastLine is the last line of text that is not empty, at most 500 bytes.
func lastLine(text string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	line := strings.TrimSpace(lines[len(lines)-1])
	if len(line) > 500 {
		line = line[:500]
	}
	return line
}

// size renders a number of bytes as people write it: 512 MiB.
func size(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
