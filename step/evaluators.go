// evaluators.go: the Runner's child evaluators (pool, child): processes of this same binary
// that do the CUE of evaluations, each under a memory bound, killed when their caller goes
// away or the time bound passes, and started again as needed. Actions run in the Runner: a
// child asks for each one and waits for its result.
//
// What costs most in evaluating in another process is not the messages but waking it up:
// a child that answered and waits for its next message sleeps, and the Runner's threads
// sleep and wake around each reply. So a child is sent its next messages while it computes
// (up to depth of them, answered in order), and the evaluations go to as few children as
// there are cores; more start only while some compute a long evaluation (stallAfter), and
// the new evaluations waiting behind such a one are taken back and sent elsewhere (those
// parked in it, after stuckAfter).

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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// depth bounds the messages written to a child and not yet answered: the one it computes
	// and those waiting behind it.
	depth = 8
	// stallAfter is how long a child computes one message before it counts as computing a
	// long evaluation (a runaway, or a big render): it is given no new evaluation, the new
	// evaluations' messages waiting behind that one are taken back (nothing of them is in the
	// child yet), and another child may start.
	stallAfter = 100 * time.Millisecond
	// stuckAfter is how long before the answers to the actions of evaluations parked in such
	// a child are taken back too: those evaluations then start again in another child, their
	// side effects replayed from the memo but their reads made again, which a long render on
	// a loaded machine is not worth; a runaway's whole time bound is.
	stuckAfter = 5 * time.Second
)

// DefaultEvaluators is Options.Evaluators when it is zero: four per core, at least eight. It
// bounds the children: one per core computes the evaluations; the others start only while
// those compute long evaluations (stallAfter), so that a runaway holds up no other. A step
// parked at an action (HTTP, kube I/O) holds no child's CPU, and up to maxParked such steps
// share a child.
func DefaultEvaluators() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

// ErrUnavailable is returned, wrapped, when the child evaluators failed an evaluation for a
// reason of their own (one could not start, one ended for other evaluations again and again,
// a reply that makes no sense), not because of what was evaluated: the caller answers it as
// its own failure (a 503), never as a problem of the input.
var ErrUnavailable = errors.New("the CUE evaluators are unavailable")

// maxParked bounds the evaluations a child holds at once.
const maxParked = 64

// maxRestarts bounds how often an evaluation is started again in another child because the
// one it was parked in ended for another evaluation.
const maxRestarts = 3

// pool holds a Runner's child evaluators. A child computes one evaluation at a time but holds
// several: an evaluation waiting for an action run here (parked) leaves the child to others.
// A new evaluation goes to the child with the fewest messages in flight, among those not
// computing a long evaluation; a child is started while there are fewer such children than
// hot, or when none has room, up to max.
type pool struct {
	exe    string
	hello  []byte
	memory int64
	max    int
	hot    int           // the children that compute the evaluations: one per core
	stall  time.Duration // stallAfter, shorter in tests
	stuck  time.Duration // stuckAfter, shorter in tests
	ids    atomic.Uint64

	mu       sync.Mutex
	children []*child
	starting int           // children being started
	changed  chan struct{} // a signal (one buffered) that a child may have room
	reap     *time.Timer
	infos    map[[32]byte]*defInfo
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
	n := max(1, opts.Evaluators)
	return &pool{exe: exe, hello: append(b, '\n'), memory: opts.EvalMemory, max: n, hot: min(n, runtime.GOMAXPROCS(0)),
		stall: stallAfter, stuck: stuckAfter, changed: make(chan struct{}, 1), infos: map[[32]byte]*defInfo{}, opts: &opts}
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

// wake tells one of those waiting in get that a child may have room; that one passes it on
// when it took a child, so that a release does not wake every waiter.
func (p *pool) wake() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// get returns a child for one more evaluation: one not computing with room for it, or a new
// one, waiting while Options.Evaluators children all compute.
func (p *pool) get(ctx context.Context) (*child, error) {
	for {
		p.mu.Lock()
		live := p.children[:0]
		for _, c := range p.children {
			if !c.ended() {
				live = append(live, c)
			}
		}
		clear(p.children[len(live):])
		p.children = live
		// The child with the fewest messages in flight or about to be (then the fewest
		// evaluations held); a new one while fewer than hot children are free to compute
		// (not computing a long evaluation), or when none has room for another evaluation.
		var best *child
		bestLoad, free := 0, 0
		now := time.Now()
		for _, c := range p.children {
			if c.retired || c.failed() || c.stalled(now) {
				continue
			}
			free++
			if c.held >= maxParked {
				continue
			}
			load := len(c.slots) + c.fresh
			if best == nil || load < bestLoad || load == bestLoad && c.held < best.held {
				best, bestLoad = c, load
			}
		}
		room := len(p.children)+p.starting < p.max
		// More children while fewer than hot compute; past that, one at a time while every
		// one free holds maxParked evaluations.
		more := room && (free+p.starting < p.hot || best == nil && free > 0 && p.starting == 0)
		if best != nil && bestLoad > 0 && more {
			best = nil // a new child computes sooner than this busy one
		}
		if best != nil {
			best.held++
			best.fresh++
			p.mu.Unlock()
			p.wake()
			return best, nil
		}
		if more {
			p.starting++
			p.mu.Unlock()
			c, err := p.start(ctx)
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			p.mu.Lock()
			p.starting--
			if err == nil {
				c.held, c.fresh = 1, 1
				p.children = append(p.children, c)
			}
			p.wake()
			p.mu.Unlock()
			return c, err
		}
		p.mu.Unlock()
		select {
		case <-p.changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second): // a child that ended
		}
	}
}

// began tells the pool that an evaluation given the child c sent it its first message: until
// then, c is not given to another new evaluation, which would wait for the child's CPU while
// another child is free.
func (p *pool) began(c *child) {
	p.mu.Lock()
	c.fresh--
	p.mu.Unlock()
}

// put gives back a child an evaluation was done with (fresh: it sent nothing); one that
// ended, or that is not to be trusted (healthy false), is ended and forgotten, which starts
// its other evaluations again elsewhere.
func (p *pool) put(c *child, healthy, fresh bool) {
	if !healthy || c.ended() {
		c.kill()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if fresh {
		c.fresh--
	}
	c.held--
	c.used = time.Now()
	if c.retired && c.held == 0 {
		c.stop()
	}
	if c.held == 0 && p.reap == nil {
		p.reap = time.AfterFunc(evaluatorIdle, p.reapIdle)
	}
	p.wake()
}

// retire gives the child c no new evaluation, and ends it once it holds none.
func (p *pool) retire(c *child) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.retired = true
}

// reapIdle ends the children unused for evaluatorIdle.
func (p *pool) reapIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := p.children[:0]
	unused := 0
	for _, c := range p.children {
		switch {
		case c.ended():
		case c.held == 0 && time.Since(c.used) >= evaluatorIdle:
			c.stop()
		default:
			keep = append(keep, c)
			if c.held == 0 {
				unused++
			}
		}
	}
	clear(p.children[len(keep):])
	p.children = keep
	p.reap = nil
	if unused > 0 {
		p.reap = time.AfterFunc(evaluatorIdle, p.reapIdle)
	}
}

// child is one child evaluator process. Its messages are in flight together: written
// before the replies to those before them came, answered in the order written, so that the
// first unanswered is the one it computes. A reader hands each reply to the exchange waiting
// for it.
type child struct {
	p       *pool
	cmd     *exec.Cmd
	in      *os.File
	dec     *json.Decoder
	stderr  *tail
	done    chan struct{} // closed once the process ended and its replies were read
	slots   chan struct{} // a value per message in flight, at most depth
	held    int           // the evaluations it holds (pool.mu)
	retired bool          // given no new evaluation, ended when it holds none (pool.mu)
	fresh   int           // of which those that sent it nothing yet (pool.mu)
	used    time.Time     // (pool.mu)
	// read is closed when no more replies can be read (the child ended, or answered what it
	// was not asked), readErr then says why.
	read    chan struct{}
	readErr error
	wmu     sync.Mutex // held while a message is written: the order in flight is the order written

	mu      sync.Mutex
	sent    map[[32]byte]bool // the definitions sent to it
	flight  []inFlight        // the messages in flight, in order: the first computes
	since   time.Time         // when the first in flight began computing
	watch   *time.Timer       // the check for a long evaluation, while messages wait behind it
	culprit uint64            // the evaluation that was computing when it ended
	killed  bool              // by kill
	// killedFor is the evaluation the child was killed for (killFor): the culprit, even when
	// the child had answered it and begun the next message before the kill came.
	killedFor uint64
	broken    bool // an exchange failed after its message was written: it is to end
}

// inFlight is a message to a child not answered yet.
type inFlight struct {
	id     uint64
	abort  bool        // an Abort: never taken back
	acted  bool        // the answer to a parked evaluation's action: taken back after stuckAfter
	left   bool        // its caller went away: the child is ended if it computes for it
	taken  bool        // asked back (withdraw)
	answer chan *reply // the reply, buffered
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
	c := &child{p: p, cmd: cmd, in: inW, dec: json.NewDecoder(outR), stderr: &tail{}, sent: map[[32]byte]bool{},
		done: make(chan struct{}), slots: make(chan struct{}, depth), used: time.Now(), read: make(chan struct{})}
	cmd.Stderr = c.stderr
	if os.Getenv(profileEnv) == "" {
		// A child profiling its CPU is left to end when its stdin closes with this process, so
		// that it writes its profile.
		cmd.SysProcAttr = childAttr()
	}
	err = cmd.Start()
	_ = inR.Close()
	_ = outW.Close()
	if err != nil {
		_ = inW.Close()
		_ = outR.Close()
		return nil, fmt.Errorf("starting a CUE evaluator: %w", err)
	}
	hello := make(chan *reply, 1)
	c.flight, c.since = []inFlight{{answer: hello}}, time.Now() // the hello's reply, ID 0
	go c.replies()
	go func() {
		_ = cmd.Wait()
		<-c.read // the replies it wrote before it ended are read
		_ = outR.Close()
		c.mu.Lock()
		switch {
		case c.killedFor != 0:
			c.culprit = c.killedFor
		case len(c.flight) > 0:
			c.culprit = c.flight[0].id // what it was computing: its replies before were read
		}
		c.mu.Unlock()
		close(c.done)
		p.wake()
	}()
	ready := make(chan error, 1)
	go func() {
		if _, err := inW.Write(p.hello); err != nil {
			ready <- err
			return
		}
		select {
		case <-hello:
			ready <- nil
		case <-c.read:
			ready <- c.readErr
		}
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

// replies reads the child's replies and hands each to the exchange waiting for it, until the
// child ends, or answers what it was not asked (it is then killed).
func (c *child) replies() {
	defer close(c.read)
	for {
		r := &reply{}
		if err := c.dec.Decode(r); err != nil {
			c.readErr = err
			return
		}
		c.mu.Lock()
		i := slices.IndexFunc(c.flight, func(f inFlight) bool { return f.id == r.ID })
		if i < 0 || i > 0 && !r.Withdrawn {
			c.mu.Unlock()
			c.readErr = fmt.Errorf("%w: a reply about evaluation %d, which it was not computing", ErrUnavailable, r.ID)
			c.kill()
			return
		}
		f := c.flight[i]
		c.flight = slices.Delete(c.flight, i, i+1)
		if i == 0 {
			c.since = time.Now()
			if len(c.flight) > 0 && c.flight[0].left {
				// One whose caller went away comes first: taken back, unless the child began it
				// before the withdrawal came. Then it computes for nobody, and is ended.
				id := c.flight[0].id
				time.AfterFunc(leftGrace, func() {
					c.mu.Lock()
					still := len(c.flight) > 0 && c.flight[0].id == id
					c.mu.Unlock()
					if still {
						c.killFor(id)
					}
				})
			}
		}
		c.mu.Unlock()
		f.answer <- r
	}
}

// leftGrace is how long a message whose caller went away may stay first in flight before its
// child is ended: the time its withdrawal takes to be answered.
const leftGrace = 50 * time.Millisecond

// stalled says that the child has computed one message for stallAfter or longer.
func (c *child) stalled(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busyFor(now, c.p.stall)
}

// busyFor says that the child has computed one message for d or longer (c.mu).
func (c *child) busyFor(now time.Time, d time.Duration) bool {
	return len(c.flight) > 0 && now.Sub(c.since) >= d
}

// patience is how long a message may wait behind one the child computes before it is taken
// back: stallAfter, or stuckAfter for the answer to a parked evaluation's action.
func (p *pool) patience(acted bool) time.Duration {
	if acted {
		return p.stuck
	}
	return p.stall
}

// failed says that the child is ending: an exchange with it failed, or it was killed and
// the process is not yet reaped. A new evaluation given it would fail at once (errGone),
// over and over while it ends, or, written to it, be taken for the cause of its end.
func (c *child) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.killed || c.broken
}

// leave answers the end of the context of the message id: the child is killed when it
// computes for it (CUE cannot be interrupted otherwise), never for a message answered, when
// it computes for others; a message waiting behind others is taken back.
func (c *child) leave(id uint64) {
	c.mu.Lock()
	i := slices.IndexFunc(c.flight, func(f inFlight) bool { return f.id == id })
	if i > 0 {
		c.flight[i].left = true
	}
	c.mu.Unlock()
	switch {
	case i == 0:
		c.killFor(id)
	case i > 0:
		c.withdraw(id)
	}
}

// watchLocked arms the check for a long evaluation while messages wait behind the first.
func (c *child) watchLocked() {
	if c.watch == nil {
		c.watch = time.AfterFunc(c.p.stall-time.Since(c.since), c.checkStall)
	}
}

// checkStall takes back the messages that waited their patience behind the one the child
// computes, to be sent to another child, and checks again when the next one's is over.
func (c *child) checkStall() {
	c.mu.Lock()
	c.watch = nil
	age := time.Since(c.since)
	var ids []uint64
	next := time.Duration(-1)
	for i := 1; i < len(c.flight); i++ {
		f := &c.flight[i]
		if f.abort || f.taken {
			continue
		}
		switch limit := c.p.patience(f.acted); {
		case age >= limit:
			f.taken = true
			ids = append(ids, f.id)
		case next < 0 || limit-age < next:
			next = limit - age
		}
	}
	if next >= 0 {
		c.watch = time.AfterFunc(next, c.checkStall)
	}
	c.mu.Unlock()
	if len(ids) > 0 {
		c.withdraw(ids...)
		c.p.wake() // a child may start in its place
	}
}

// withdraw asks the child to take back the messages ids, if it has not begun them: each
// taken back is answered Withdrawn.
func (c *child) withdraw(ids ...uint64) {
	if len(ids) == 0 {
		return
	}
	b, _ := json.Marshal(request{Withdraw: ids})
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		c.kill() // it cannot be told: its messages would wait, unbounded, behind the one it computes
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

// killFor kills the child for the evaluation id, the first in flight: the culprit of its
// end, though the child may have answered it and begun the next (whose reply is then read
// before the end, and the next is not to blame).
func (c *child) killFor(id uint64) {
	c.mu.Lock()
	if c.killedFor == 0 {
		c.killedFor = id
	}
	c.mu.Unlock()
	c.kill()
}

// stop ends an idle child: it exits when its stdin closes.
func (c *child) stop() { _ = c.in.Close() }

// errEncoding is a request that could not be encoded: the child is well.
type errEncoding struct{ err error }

func (e *errEncoding) Error() string {
	return "encoding a request to the CUE evaluator: " + e.err.Error()
}

// errGone is a child that ended while it held the evaluation parked, or before the evaluation
// sent it anything, or that computes a long evaluation the evaluation's message waited
// behind (taken back): the evaluation is not the cause and starts again in another child.
type errGone struct {
	err   error
	taken bool // taken back, not ended: it does not count towards maxRestarts
}

func (e *errGone) Error() string {
	if e.taken {
		return "the CUE evaluator was busy: " + e.err.Error()
	}
	return "the CUE evaluator ended: " + e.err.Error()
}

// exchange sends req about the evaluation id and waits for the reply, behind at most
// depth-1 other messages in flight. While the child computes for it, the end of ctx kills
// the child; while it waits behind others, the end of ctx takes it back. written says that
// the message reached the child: an error after that leaves the child in a state nobody
// knows, and it is to be ended; an error before (the end of ctx while waiting, an
// errEncoding or errGone) leaves it as it was, to the other evaluations it holds.
func (c *child) exchange(ctx context.Context, id uint64, req *request, rep *reply, turn func()) (written bool, err error) {
	req.ID = id
	b, err := json.Marshal(req)
	if err != nil {
		return false, &errEncoding{err}
	}
	select {
	case c.slots <- struct{}{}:
		if turn != nil {
			turn() // in flight from here: the pool counts it in the child's load
		}
	case <-ctx.Done():
		return false, ctx.Err()
	case <-c.done:
		return false, &errGone{err: errors.New("before the evaluation's turn")}
	}
	defer func() {
		<-c.slots
		c.p.wake()
	}()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	answer := make(chan *reply, 1)
	c.wmu.Lock()
	c.mu.Lock()
	// Ended, killed, or ending for a failed exchange: a message written now would make this
	// evaluation the culprit of an end it did not cause. Computing a long evaluation past
	// the message's patience: it would wait for its end (an Abort may: nobody waits for it).
	if c.ended() || c.killed || c.broken {
		c.mu.Unlock()
		c.wmu.Unlock()
		return false, &errGone{err: errors.New("before the evaluation's turn")}
	}
	if !req.Abort && c.busyFor(time.Now(), c.p.patience(req.Acted != nil)) {
		c.mu.Unlock()
		c.wmu.Unlock()
		return false, &errGone{err: errors.New("it computes a long evaluation"), taken: true}
	}
	if len(c.flight) == 0 {
		c.since = time.Now()
	}
	c.flight = append(c.flight, inFlight{id: id, abort: req.Abort, acted: req.Acted != nil, answer: answer})
	if len(c.flight) > 1 {
		c.watchLocked()
	}
	c.mu.Unlock()
	_, err = c.in.Write(append(b, '\n'))
	c.wmu.Unlock()
	if err != nil {
		c.breakOff()
		return true, err
	}
	stop := context.AfterFunc(ctx, func() { c.leave(id) })
	defer stop()
	var r *reply
	select {
	case r = <-answer:
	case <-c.read:
		select {
		case r = <-answer: // answered before the child ended
		default:
			c.breakOff()
			return true, c.readErr
		}
	}
	if r.Withdrawn {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		return false, &errGone{err: errors.New("taken back from behind a long evaluation"), taken: true}
	}
	*rep = *r
	return true, nil
}

// breakOff marks the child to be ended: an exchange failed after its message was written.
func (c *child) breakOff() {
	c.mu.Lock()
	c.broken = true
	c.mu.Unlock()
}

// session is one evaluation in a child: its requests and their replies, under the caller's
// context and the time bound: when either ends while the child computes for it, the child is
// killed, which ends the exchange.
type session struct {
	p     *pool
	c     *child
	id    uint64
	ctx   context.Context
	what  string // what is evaluated, for messages: "the step"
	limit time.Duration
	sent  bool // a message, the first of the evaluation in the child
	// broken: an exchange failed after its message was written (the child ended, or is to
	// be, with this evaluation its culprit); the child is ended when the session ends. Nothing else ends it: the child holds other
	// evaluations, which an error of this one's caller (its context ending while it waited
	// for the child) must not touch.
	broken bool
}

// with starts a session in the child c, taken before (get). The time bound is the caller's
// (the evaluation of a step has its own, bounded) or, when limit is positive, limit.
func (p *pool) with(ctx context.Context, c *child, what string, limit time.Duration) (*session, func()) {
	cancel := func() {}
	if limit > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, limit, errEvalTimeout)
	}
	return &session{p: p, c: c, id: p.ids.Add(1), ctx: ctx, what: what, limit: limit}, cancel
}

// end gives the child back, to be ended when the session broke it.
func (s *session) end() { s.p.put(s.c, !s.broken, !s.sent) }

// send sends a request naming the definition src (key: the hash of its type and text, from
// definitionKey), with its text when the child may not have
// it, and reads the reply; a reply asking for the text has it sent. An error names why the
// child did not answer: the end of the caller's context, the time bound, or the child's end.
func (s *session) send(req *request, src *source, key [32]byte, text string, rep *reply) error {
	src.Key = hex.EncodeToString(key[:])
	s.c.mu.Lock()
	if !s.c.sent[key] {
		src.Source = text
	}
	s.c.mu.Unlock()
	if err := s.exchange(req, rep); err != nil {
		return err
	}
	if rep.Missing {
		src.Source = text
		if err := s.exchange(req, rep); err != nil {
			return err
		}
	}
	s.c.mu.Lock()
	s.c.sent[key] = true
	s.c.mu.Unlock()
	src.Source = ""
	return nil
}

// exchange sends req and reads the reply, explaining a child that did not answer.
func (s *session) exchange(req *request, rep *reply) error {
	// The child stops being fresh once this first message holds its CPU, not before: in
	// between, the pool would take it for a child free to compute and give it to another new
	// evaluation, which would then wait behind this one's CUE (and its time bound).
	var turn func()
	if !s.sent {
		turn = func() {
			s.sent = true
			s.p.began(s.c)
		}
	}
	written, err := s.c.exchange(s.ctx, s.id, req, rep, turn)
	if err != nil {
		if written {
			s.broken = true
		}
		return s.why(err)
	}
	if rep.Failure != nil {
		return fmt.Errorf("CUE evaluator: %s", rep.Failure.Message)
	}
	return nil
}

// why explains the end of an exchange with the child: the caller's context ended (its error),
// the time bound passed, or the child ended (the memory bound, or a crash), each a *failure
// naming the bound and its flag; or an *errGone when the child ended for another evaluation.
func (s *session) why(err error) error {
	if _, ok := errors.AsType[*errEncoding](err); ok {
		return err
	}
	if _, ok := errors.AsType[*errGone](err); ok {
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
	s.c.mu.Lock()
	culprit := s.c.culprit
	s.c.mu.Unlock()
	if culprit != s.id {
		return &errGone{err: err}
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
	return fmt.Errorf("evaluating %s: %w: one ended (exit code %d): %w", s.what, ErrUnavailable, code, err)
}

// restarting runs attempt, in another child each time again, while its child ends for
// another evaluation (errGone), at most maxRestarts times again.
func (p *pool) restarting(ctx context.Context, c *child, attempt func(*child) error) error {
	for n := 0; ; n++ {
		err := attempt(c)
		gone, ok := errors.AsType[*errGone](err)
		if !ok {
			return err
		}
		if gone.taken {
			n-- // taken back from behind a long evaluation: bounded by the caller's time
		}
		if n == maxRestarts {
			return fmt.Errorf("%w: those holding the evaluation ended %d times for others: %w", ErrUnavailable, n+1, gone)
		}
		if c, err = p.get(ctx); err != nil {
			return err
		}
	}
}

// step evaluates the CUE of e in its child (e.child, which it takes), running its actions
// here. When that child ends for another evaluation while e waits for an action, e starts
// again in another child, replaying the actions that ran from its memo.
func (p *pool) step(ctx context.Context, e *evaluation) error {
	c := e.child
	e.child = nil
	return p.restarting(ctx, c, func(c *child) error { return p.stepIn(ctx, e, c) })
}

// stepIn evaluates e in the child c.
func (p *pool) stepIn(ctx context.Context, e *evaluation, c *child) (err error) {
	s, cancel := p.with(ctx, c, "the step", 0)
	defer cancel()
	props := e.req.Properties
	if len(props) > 0 && !json.Valid(props) { // not sent: it would not encode
		if _, err := readProperties(props); err != nil {
			s.end()
			return failf(v1alpha1.ReasonParameter, "properties: %v", err)
		}
		props = nil // white space
	}
	parked := false
	defer func() {
		if parked && !s.c.ended() && !s.broken {
			go s.abandon(context.WithoutCancel(ctx)) // parked in the child: ended there, without the caller
			return
		}
		s.end()
	}()
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
		parked = true
		e.Sensitive(rep.Sensitive...)
		if err := ctx.Err(); err != nil {
			return err // cancelled between actions: the next does not run
		}
		out, err := e.act(ctx, rep.Action)
		req := &request{Acted: &out}
		if err != nil {
			actErr, req = err, &request{Abort: true}
		}
		if err := s.exchange(req, &rep); err != nil {
			if actErr != nil {
				// The evaluation ends with its action's error, whether or not its child is
				// still there to hear it (the action may have taken it down: a render past
				// a bound, in the child it waited in).
				return actErr
			}
			return err
		}
		parked = false
	}
	e.Sensitive(rep.Sensitive...)
	d := rep.Done
	if d == nil {
		return fmt.Errorf("%w: an unexpected reply", ErrUnavailable)
	}
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

// abandonTimeout bounds the end of an evaluation abandoned while parked in a child.
const abandonTimeout = 30 * time.Second

// abandon ends, in the child, an evaluation its caller left while it was parked at an action,
// and gives the child back. ctx carries the caller's values, not its end.
func (s *session) abandon(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, abandonTimeout)
	defer cancel()
	var rep reply
	written, err := s.c.exchange(ctx, s.id, &request{Abort: true}, &rep, nil)
	switch {
	case written && err != nil:
		s.broken = true
	case !written || rep.Done == nil:
		// The evaluation stays parked in the child: the child takes no new evaluation and
		// ends once the others it holds are done (killing it now would end the one it
		// computes for, the culprit of nothing).
		s.p.retire(s.c)
	}
	s.end()
}

// definitionKey identifies a definition by its type and text.
func definitionKey(typ, text string) [32]byte { return sha256.Sum256([]byte(typ + "\x00" + text)) }

// condition evaluates an `if` in a child.
func (p *pool) condition(ctx context.Context, limit time.Duration, expr string, scope map[string]any) (bool, error) {
	b, err := json.Marshal(scope)
	if err != nil {
		return false, fmt.Errorf("encoding the condition's scope: %w", err)
	}
	c, err := p.get(ctx)
	if err != nil {
		return false, err
	}
	var rep reply
	err = p.restarting(ctx, c, func(c *child) error {
		s, cancel := p.with(ctx, c, "the condition", limit)
		defer cancel()
		err := s.exchange(&request{If: &ifRequest{Expr: expr, Scope: b}}, &rep)
		s.end()
		return err
	})
	switch {
	case err != nil:
		return false, boundError(err)
	case rep.If == nil:
		return false, fmt.Errorf("%w: an unexpected reply", ErrUnavailable)
	case rep.If.Error != "":
		return false, errors.New(rep.If.Error)
	}
	return rep.If.Value, nil
}

// key evaluates a cache key in a child; an error of the expression is terminal. Without a
// scope the key is only compiled.
func (p *pool) key(ctx context.Context, limit time.Duration, expr string, scope map[string]any) (json.RawMessage, error) {
	var b json.RawMessage
	if scope != nil {
		var err error
		if b, err = json.Marshal(scope); err != nil {
			return nil, engine.Terminal(v1alpha1.ReasonRendering, fmt.Errorf("encoding the key's scope: %w", err))
		}
	}
	c, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	var rep reply
	err = p.restarting(ctx, c, func(c *child) error {
		s, cancel := p.with(ctx, c, "the cache key", limit)
		defer cancel()
		err := s.exchange(&request{If: &ifRequest{Expr: expr, Scope: b, Key: true, Compile: scope == nil}}, &rep)
		s.end()
		return err
	})
	switch {
	case err != nil:
		return nil, boundError(err)
	case rep.If == nil:
		return nil, fmt.Errorf("%w: an unexpected reply", ErrUnavailable)
	case rep.If.Error != "":
		return nil, engine.Terminal(v1alpha1.ReasonRendering, errors.New(rep.If.Error))
	}
	return rep.If.Key, nil
}

// check compiles a definition, or checks properties against it, in a child.
func (p *pool) check(ctx context.Context, limit time.Duration, req *checkRequest, text string) error {
	what := "the definition " + req.Type
	if !req.Compile {
		what = "the properties of a step of type " + req.Type
	}
	c, err := p.get(ctx)
	if err != nil {
		return err
	}
	var rep reply
	err = p.restarting(ctx, c, func(c *child) error {
		s, cancel := p.with(ctx, c, what, limit)
		defer cancel()
		err := s.send(&request{Check: req}, &req.source, definitionKey(req.Type, text), text, &rep)
		s.end()
		return err
	})
	switch {
	case err != nil:
		return boundError(err)
	case rep.Check == nil:
		return fmt.Errorf("%w: an unexpected reply", ErrUnavailable)
	case len(rep.Check.Properties) > 0:
		return rep.Check.Properties
	case rep.Check.Error != "":
		return errors.New(rep.Check.Error)
	}
	return nil
}

// x makes an X-Definition's check in a child; what names what it checks in messages.
func (p *pool) x(ctx context.Context, limit time.Duration, req *xRequest, what string) (*xDone, error) {
	c, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	var rep reply
	err = p.restarting(ctx, c, func(c *child) error {
		s, cancel := p.with(ctx, c, what+" of an X-Definition", limit)
		defer cancel()
		err := s.exchange(&request{X: req}, &rep)
		s.end()
		return err
	})
	switch {
	case err != nil:
		return nil, boundError(err)
	case rep.X == nil:
		return nil, fmt.Errorf("%w: an unexpected reply", ErrUnavailable)
	}
	return rep.X, nil
}

// describe describes a template's parameter in a child.
func (p *pool) describe(ctx context.Context, limit time.Duration, template string) (*described, error) {
	c, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	var rep reply
	err = p.restarting(ctx, c, func(c *child) error {
		s, cancel := p.with(ctx, c, "the parameter of a definition", limit)
		defer cancel()
		err := s.exchange(&request{Describe: &template}, &rep)
		s.end()
		return err
	})
	switch {
	case err != nil:
		return nil, boundError(err)
	case rep.Described == nil:
		return nil, fmt.Errorf("%w: an unexpected reply", ErrUnavailable)
	}
	return rep.Described, nil
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
