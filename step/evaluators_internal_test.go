package step

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// busyCheck is a definition whose check computes for a while (about a second on an idle
// core): n is given in the properties.
const busyCheck = `
import "list"

parameter: n: int
total: list.Sum([for i in list.Range(0, parameter.n, 1) {i * 2}])
`

// oneChild returns a Runner with one child evaluator and that child, taken for one evaluation.
func oneChild(t *testing.T) (*Runner, *child) {
	t.Helper()
	r := NewRunner(Options{Evaluators: 1, EvalTimeout: 2 * time.Minute})
	c, err := r.pool.get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

// busyChild returns a pool of at most evaluators children, hot of them computing (pool.hot),
// and a child of it computing the busy check, whose end checked gives; the child is taken
// for a second evaluation too, as one parked in it would be.
func busyChild(t *testing.T, evaluators, hot int, stall time.Duration) (p *pool, c *child, checked <-chan error) {
	t.Helper()
	r := NewRunner(Options{Evaluators: evaluators, EvalTimeout: 2 * time.Minute})
	p = r.pool
	p.hot, p.stall = hot, stall
	c, err := p.get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, cancel := p.with(t.Context(), c, "the busy check", time.Minute)
	t.Cleanup(cancel)
	checked = startCheck(t, b, 20000)
	p.mu.Lock()
	c.held++
	c.fresh++
	p.mu.Unlock()
	return p, c, checked
}

// computing says that a message to the child is unanswered.
func (c *child) computing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.flight) > 0
}

// startCheck checks the properties n of busyCheck in the child c for the session s in the
// background and returns its error when done; it returns once the child computes.
func startCheck(t *testing.T, s *session, n int) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		req := &checkRequest{source: source{Type: "busy"}, Properties: fmt.Appendf(nil, `{"n": %d}`, n)}
		var rep reply
		err := s.send(&request{Check: req}, &req.source, definitionKey("busy", busyCheck), busyCheck, &rep)
		if err == nil && (rep.Check == nil || rep.Check.Error != "" || len(rep.Check.Properties) > 0) {
			err = errors.New("an unexpected reply")
		}
		s.end()
		done <- err
	}()
	for deadline := time.Now().Add(time.Minute); !s.c.computing(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the check never reached its child")
		}
	}
	return done
}

// An evaluation whose caller goes away while it waits for its turn at a child that computes
// for another does not end that child: the other's check succeeds. Before, the one that left
// killed the child it shared, and the check it computed was reported as its own failure
// ("the CUE evaluator was ended by signal killed"), which the server answered with 400 to
// a valid run (TestReplicaCrashRecovery in CI, where steps' contexts end as leases move).
func TestLeavingWhileWaitingSparesTheSharedChild(t *testing.T) {
	// Taken back because its caller left, not for waiting long.
	p, c, checked := busyChild(t, 1, 1, time.Hour)
	// The second evaluation's caller leaves while it waits for the child.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	s, cancelS := p.with(ctx, c, "the condition", 0)
	defer cancelS()
	var rep reply
	err := s.exchange(&request{If: &ifRequest{Expr: "true", Scope: []byte(`{}`)}}, &rep)
	s.end()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the evaluation whose caller left: %v", err)
	}
	if err := <-checked; err != nil {
		t.Errorf("the check computing in the shared child: %v", err)
	}
}

// A child killed and not yet reaped is given to no new evaluation: one given it would fail
// at once (the CUE evaluators ended for others, four times in a microsecond, which the
// server answered with 400 in TestReplicaCrashRecovery) or, written to it, be taken for the
// cause of its end.
func TestKilledChildIsNotGivenOut(t *testing.T) {
	r, c := oneChild(t)
	p := r.pool
	c.kill()
	p.put(c, true, true)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got, err := p.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.put(got, true, true)
	if got == c {
		t.Fatal("the killed child was given to a new evaluation")
	}
	var rep reply
	s, cancelS := p.with(ctx, got, "the condition", time.Minute)
	defer cancelS()
	err = s.exchange(&request{If: &ifRequest{Expr: "true", Scope: []byte(`{}`)}}, &rep)
	s.end()
	if err != nil || rep.If == nil || !rep.If.Value {
		t.Errorf("the condition in the child given instead: %+v %v", rep.If, err)
	}
}

// A message sent to a child while it computes waits there; behind a long evaluation it is
// taken back and computed by another child, while the first still computes: a runaway holds
// up no evaluation but its own, though the messages are sent ahead.
func TestMessageBehindALongEvaluationGoesElsewhere(t *testing.T) {
	// One child computes; another starts at the stall. The second evaluation's message
	// waits behind the check.
	p, c, checked := busyChild(t, 2, 1, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var rep reply
	var in []*child
	err := p.restarting(ctx, c, func(c *child) error {
		in = append(in, c)
		s, cancelS := p.with(ctx, c, "the condition", time.Minute)
		defer cancelS()
		err := s.exchange(&request{If: &ifRequest{Expr: "true", Scope: []byte(`{}`)}}, &rep)
		s.end()
		return err
	})
	if err != nil || rep.If == nil || !rep.If.Value {
		t.Fatalf("the condition: %+v %v", rep.If, err)
	}
	select {
	case err := <-checked:
		t.Fatalf("the condition was answered only after the check it waited behind (%v)", err)
	default:
	}
	if len(in) != 2 || in[1] == c {
		t.Errorf("the condition was sent to %d children, the last the busy one: %v", len(in), in[len(in)-1] == c)
	}
	if err := <-checked; err != nil {
		t.Errorf("the check, computing while the condition was taken back: %v", err)
	}
}

// Short evaluations, many at once, are computed by one child per core (pool.hot), their
// messages sent ahead: waking more children would cost more than it gains.
func TestShortEvaluationsUseOneChildPerCore(t *testing.T) {
	r := NewRunner(Options{Evaluators: 8, EvalTimeout: time.Minute})
	p := r.pool
	p.stall = time.Hour // a loaded machine's slow message is not a long evaluation here
	errs := make(chan error, 40)
	for range cap(errs) {
		go func() {
			v, err := p.condition(t.Context(), time.Minute, "len(inputs.s) > 0", map[string]any{"inputs": map[string]any{"s": "x"}})
			if err == nil && !v {
				err = errors.New("false")
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.children); n > p.hot {
		t.Errorf("%d children for short evaluations, one per core is %d", n, p.hot)
	}
}

// The answer to a parked evaluation's action waits behind a long evaluation longer than a new
// evaluation's message does (stuckAfter): taken back, the evaluation would start again in
// another child and make its reads again, which a render slowed by a loaded machine is not
// worth. Past its patience it is taken back all the same.
func TestActionAnswerWaitsLongerBehindALongEvaluation(t *testing.T) {
	for _, stuck := range []time.Duration{time.Hour, 50 * time.Millisecond} {
		p, c, checked := busyChild(t, 2, 1, 50*time.Millisecond)
		p.stuck = stuck
		s, cancel := p.with(t.Context(), c, "the step", time.Minute)
		var rep reply
		// The answer to an action of an evaluation not parked there: the child says so when
		// it comes to it.
		err := s.exchange(&request{Acted: &acted{}}, &rep)
		s.end()
		cancel()
		gone, taken := errors.AsType[*errGone](err)
		if stuck == time.Hour {
			if taken || err == nil || !strings.Contains(err.Error(), "no evaluation") {
				t.Errorf("an answer waiting behind the check for less than its patience: %v, want the child's own reply", err)
			}
		} else {
			if !taken || !gone.taken {
				t.Errorf("an answer waiting behind the check past its patience: %v, want it taken back", err)
			}
			select {
			case err := <-checked:
				t.Errorf("the answer was taken back only after the check ended (%v)", err)
			default:
			}
		}
		if err := <-checked; err != nil {
			t.Errorf("the check: %v", err)
		}
	}
}

// A child killed for the evaluation it computes is killed for that one, even when it had
// answered it and begun the next before the kill came: the next is not to blame and starts
// again elsewhere. Before, the first unanswered message when the child ended was taken for
// the culprit, and that next step failed ("the CUE evaluator was ended by signal killed";
// TestReplicaCrashRecovery in CI, where steps' contexts end as leases move).
func TestKillBlamesTheEvaluationItWasFor(t *testing.T) {
	r := NewRunner(Options{Evaluators: 1, EvalTimeout: 2 * time.Minute})
	p := r.pool
	p.stall, p.stuck = time.Hour, time.Hour
	c, err := p.get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	c.held++
	c.fresh++
	p.mu.Unlock()
	short, cancelShort := p.with(t.Context(), c, "the short check", time.Minute)
	defer cancelShort()
	long, cancelLong := p.with(t.Context(), c, "the long check", time.Minute)
	defer cancelLong()
	shortDone := startCheck(t, short, 2000)
	longDone := startCheck(t, long, 60000)
	inFlight := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.flight)
	}
	for deadline := time.Now().Add(time.Minute); inFlight() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the long check never followed the short one")
		}
	}
	// The reader is held back (c.mu) while the child answers the short check and begins the
	// long one; the short check's caller leaving is let in first (a mutex waited for hands
	// over in order), the short check still first in flight.
	c.mu.Lock()
	left := make(chan struct{})
	go func() {
		c.leave(short.id)
		close(left)
	}()
	time.Sleep(time.Second)
	c.mu.Unlock()
	<-left
	errLong, errShort := <-longDone, <-shortDone
	c.mu.Lock()
	killed, killedFor := c.killed, c.killedFor
	c.mu.Unlock()
	if !killed || killedFor != short.id {
		t.Skipf("the short check was not first in flight when its caller left (killed %v): nothing shown", killed)
	}
	if errShort != nil {
		t.Errorf("the short check, answered before the kill: %v", errShort)
	}
	if gone, ok := errors.AsType[*errGone](errLong); !ok || gone.taken {
		t.Errorf("the long check, begun as the child was killed for the short one: %v, want to start again elsewhere", errLong)
	}
}
