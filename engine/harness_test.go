package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// memStore is an engine.Store in memory that round-trips runs through JSON, as a real one does.
type memStore struct {
	mu   sync.Mutex
	runs map[engine.Key][]byte
	vers map[engine.Key]int64
	logs map[engine.Key][]engine.LogEntry
}

func newMemStore() *memStore {
	return &memStore{runs: map[engine.Key][]byte{}, vers: map[engine.Key]int64{}, logs: map[engine.Key][]engine.LogEntry{}}
}

func (s *memStore) Load(_ context.Context, key engine.Key) (*engine.Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.runs[key]
	if !ok {
		return nil, fmt.Errorf("run %s: %w", key, engine.ErrNotFound)
	}
	var r engine.Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	r.Version = s.vers[key]
	return &r, nil
}

func (s *memStore) Save(_ context.Context, run *engine.Run, logs []engine.LogEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := run.Key()
	if s.vers[key] != run.Version {
		return fmt.Errorf("run %s: %w", key, engine.ErrConflict)
	}
	b, err := json.Marshal(run)
	if err != nil {
		return err
	}
	s.runs[key] = b
	s.vers[key]++
	run.Version = s.vers[key]
	s.logs[key] = append(s.logs[key], logs...)
	return nil
}

// script is a StepRunner whose behaviour is chosen by the step type:
//
//	ok       succeeds; outputs take the value of property "value" (or the step name)
//	fail     fails with reason Action
//	error    returns a retryable error
//	wait     waits until property "until" (a counter name) has been released by the test
//	suspend  suspends (property "duration" for a timed one); succeeds once resumed or expired
//	break    breaks
//	block    blocks until the test releases the step by name (counted as "NAME cancelled"
//	         when its evaluation is cancelled first)
//	post     a side effect: without one in its memo, blocks until the test releases the step
//	         by name, then makes it (counted as NAME!, after calling onPost) and waits with
//	         it memoized; with it memoized, waits
//	by-item  behaves as the type named by property "kind" (an iteration fills it from its item)
//	leak     shows property "secret" (or context.token) in its message, its log and its
//	         outputs; marks it sensitive when property "mark" is true; fails when "fail" is
//	         true, quoting it
//
// Evaluations are counted by step name and, in an iteration, by step name and index: a[2].
type script struct {
	mu       sync.Mutex
	runs     map[string]int // evaluations per step name
	released map[string]bool
	blocked  map[string]chan struct{}
	active   int
	peak     int
	// onPost, when set, is called as a post step makes its side effect.
	onPost func(step string)
}

func newScript() *script {
	return &script{runs: map[string]int{}, released: map[string]bool{}, blocked: map[string]chan struct{}{}}
}

func (s *script) count(step string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[step]
}

func (s *script) release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released[name] = true
	if ch, ok := s.blocked[name]; ok {
		close(ch)
		delete(s.blocked, name)
	}
}

func (s *script) RunStep(ctx context.Context, req *engine.StepRequest) (*engine.StepResult, error) {
	props := map[string]any{}
	if err := json.Unmarshal(req.Properties, &props); err != nil {
		return nil, fmt.Errorf("properties %s: %w", req.Properties, err)
	}
	s.mu.Lock()
	s.runs[req.Step.Name]++
	if i, ok := req.Context["index"]; ok {
		s.runs[fmt.Sprintf("%s[%v]", req.Step.Name, i)]++
	}
	s.active++
	if s.active > s.peak {
		s.peak = s.active
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	}()
	out := func() map[string]json.RawMessage {
		v := props["value"]
		if v == nil {
			v = req.Step.Name
		}
		b, _ := json.Marshal(v)
		o := map[string]json.RawMessage{}
		for _, item := range req.Step.Outputs {
			o[item.Name] = b
		}
		return o
	}
	typ := req.Step.Type
	if typ == "by-item" {
		typ, _ = props["kind"].(string)
	}
	switch typ {
	case "ok":
		msg, _ := props["message"].(string)
		logs := []engine.LogEntry{{Time: req.Now, Step: req.Step.Name, Message: "ran"}}
		return &engine.StepResult{Outcome: engine.Succeeded, Outputs: out(), Message: msg, Logs: logs}, nil
	case "fail":
		return &engine.StepResult{Outcome: engine.Failed, Reason: v1alpha1.ReasonAction, Message: "boom"}, nil
	case "notification":
		// What the built-in notification type does, as far as the engine sees it.
		if props["fail"] == true {
			return &engine.StepResult{Outcome: engine.Failed, Reason: v1alpha1.ReasonAction, Message: "webhook answered 503"}, nil
		}
		logs := []engine.LogEntry{{Time: req.Now, Step: req.Step.Name, Action: "notification.webhook", Message: fmt.Sprintf("sent %v", props["text"])}}
		return &engine.StepResult{Outcome: engine.Succeeded, Logs: logs}, nil
	case "error":
		return nil, fmt.Errorf("connection refused")
	case "wait":
		s.mu.Lock()
		ok := s.released[props["until"].(string)]
		s.mu.Unlock()
		if !ok {
			return &engine.StepResult{Outcome: engine.Waiting, Message: "not yet"}, nil
		}
		return &engine.StepResult{Outcome: engine.Succeeded, Outputs: out()}, nil
	case "suspend":
		if req.Resumed || req.Memo["until"] != nil && !req.Now.Before(mustTime(req.Memo["until"])) {
			return &engine.StepResult{Outcome: engine.Succeeded}, nil
		}
		res := &engine.StepResult{Outcome: engine.Suspended, Message: "waiting for approval", Memo: req.Memo}
		if d, ok := props["duration"].(string); ok {
			dd, _ := time.ParseDuration(d)
			until := req.Now.Add(dd)
			if req.Memo["until"] != nil {
				until = mustTime(req.Memo["until"])
			}
			b, _ := json.Marshal(until)
			res.Memo = map[string]json.RawMessage{"until": b}
			res.SuspendUntil = until
		}
		return res, nil
	case "memo-wait":
		// A side effect whose result (props' value) the memo keeps while the step waits.
		b, _ := json.Marshal(props["value"])
		return &engine.StepResult{Outcome: engine.Waiting, Message: "posted", Memo: map[string]json.RawMessage{"posted": b}}, nil
	case "memo-then-error":
		// The first evaluation records a side effect and then errors; the retry must see it.
		if req.Memo["posted"] == nil {
			return &engine.StepResult{Memo: map[string]json.RawMessage{"posted": json.RawMessage("true")}}, fmt.Errorf("timeout")
		}
		return &engine.StepResult{Outcome: engine.Succeeded}, nil
	case "break":
		return &engine.StepResult{Outcome: engine.Broke, Message: "enough"}, nil
	case "leak":
		secret, _ := props["secret"].(string)
		if secret == "" {
			secret, _ = req.Context["token"].(string)
		}
		b, _ := json.Marshal(secret)
		res := &engine.StepResult{
			Outcome: engine.Succeeded, Message: "the secret is " + secret,
			Logs:    []engine.LogEntry{{Time: req.Now, Step: req.Step.Name, Message: "read " + secret, Data: json.RawMessage(`{"got":` + string(b) + `}`)}},
			Outputs: map[string]json.RawMessage{},
		}
		for _, item := range req.Step.Outputs {
			res.Outputs[item.Name] = b
		}
		if props["mark"] == true {
			res.Sensitive = []string{secret}
		}
		if props["fail"] == true {
			res.Outcome, res.Reason, res.Message = engine.Failed, v1alpha1.ReasonAction, "refused "+secret
		}
		return res, nil
	case "post":
		if req.Memo["posted"] != nil {
			return &engine.StepResult{Outcome: engine.Waiting, Message: "posted already", Memo: req.Memo}, nil
		}
		if err := s.blockUntilReleased(ctx, req.Step.Name); err != nil {
			return nil, err
		}
		s.mu.Lock()
		onPost := s.onPost
		s.runs[req.Step.Name+"!"]++
		s.mu.Unlock()
		if onPost != nil {
			onPost(req.Step.Name)
		}
		return &engine.StepResult{Outcome: engine.Waiting, Message: "posted", Memo: map[string]json.RawMessage{"posted": json.RawMessage("true")}}, nil
	case "block":
		if err := s.blockUntilReleased(ctx, req.Step.Name); err != nil {
			return nil, err
		}
		return &engine.StepResult{Outcome: engine.Succeeded, Outputs: out()}, nil
	}
	return nil, engine.Terminal("Rendering", fmt.Errorf("unknown step type %q", req.Step.Type))
}

// blockUntilReleased returns once the test has released the step by name, or with ctx's error.
func (s *script) blockUntilReleased(ctx context.Context, name string) error {
	s.mu.Lock()
	if s.released[name] {
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.blocked[name] = ch
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		s.runs[name+" cancelled"]++
		s.mu.Unlock()
		return ctx.Err()
	}
}

func mustTime(raw json.RawMessage) time.Time {
	var t time.Time
	_ = json.Unmarshal(raw, &t)
	return t
}

// conds is a ConditionEvaluator knowing a few expressions, so that engine tests need no CUE.
type conds struct{}

func (conds) EvalIf(_ context.Context, expr string, scope map[string]any) (bool, error) {
	status := scope["status"].(map[string]any)
	field := func(step, f string) bool {
		st, ok := status[step].(map[string]any)
		return ok && st[f] == true
	}
	ctxv := scope["context"].(map[string]any)
	switch {
	case strings.HasPrefix(expr, "status.") && strings.Count(expr, ".") == 2:
		p := strings.Split(expr, ".")
		return field(p[1], p[2]), nil
	case strings.HasPrefix(expr, "context.env == "):
		return fmt.Sprintf("%q", ctxv["env"]) == strings.TrimPrefix(expr, "context.env == "), nil
	case strings.HasPrefix(expr, "context.index != "):
		return fmt.Sprint(ctxv["index"]) != strings.TrimPrefix(expr, "context.index != "), nil
	case strings.HasPrefix(expr, "context.item == "):
		return fmt.Sprintf("%q", ctxv["item"]) == strings.TrimPrefix(expr, "context.item == "), nil
	case expr == "inputs.tag":
		return false, fmt.Errorf("not a boolean")
	}
	return false, fmt.Errorf("test evaluator cannot evaluate %q", expr)
}

// harness runs an engine over a memStore with a fake clock and records what it sees.
type harness struct {
	t      *testing.T
	store  *memStore
	clock  *engine.FakeClock
	script *script
	eng    *engine.Engine
	mu     sync.Mutex
	last   map[engine.Key]*engine.Run
	change chan struct{}
	// templates are the Workflow templates runs may refer to, by name.
	templates map[string]*v1alpha1.Workflow
	// stop stops the engine and waits for it, as a process that dies; the test's end calls it.
	stop func()
}

// Workflow implements engine.Workflows over the harness's templates.
func (h *harness) Workflow(_ context.Context, namespace, name string) (*v1alpha1.Workflow, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	wf, ok := h.templates[name]
	if !ok {
		return nil, fmt.Errorf("workflow %s/%s: %w", namespace, name, engine.ErrNotFound)
	}
	return wf, nil
}

// template stores a Workflow template written in YAML (its steps).
func (h *harness) template(name, steps string) {
	h.t.Helper()
	var m any
	if err := yaml.Unmarshal([]byte(steps), &m); err != nil {
		h.t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	wf := &v1alpha1.Workflow{}
	if err := json.Unmarshal(b, wf); err != nil {
		h.t.Fatal(err)
	}
	wf.Name = name
	h.mu.Lock()
	h.templates[name] = wf
	h.mu.Unlock()
}

// saved returns the stored run.
func (h *harness) saved(key engine.Key) *engine.Run {
	h.t.Helper()
	run, err := h.store.Load(context.Background(), key)
	if err != nil {
		h.t.Fatal(err)
	}
	return run
}

func newHarness(t *testing.T, configure ...func(*engine.Options)) *harness {
	t.Helper()
	h := &harness{
		t: t, store: newMemStore(), clock: engine.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		script: newScript(), last: map[engine.Key]*engine.Run{}, change: make(chan struct{}, 1),
		templates: map[string]*v1alpha1.Workflow{},
	}
	opts := engine.Options{
		Store: h.store, Runner: h.script, Conditions: conds{}, Observer: h, Clock: h.clock, Workflows: h,
		Retry: engine.RetryPolicy{Limit: 2, Backoff: engine.Backoff{Initial: time.Second, Factor: 2, Max: 10 * time.Second}},
		Wait:  engine.Backoff{Initial: time.Second, Factor: 2, Max: 4 * time.Second},
	}
	for _, c := range configure {
		c(&opts)
	}
	h.eng = engine.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.eng.Start(ctx); close(done) }()
	h.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(h.stop)
	return h
}

func (h *harness) RunChanged(run *engine.Run) {
	b, _ := json.Marshal(run)
	var cp engine.Run
	_ = json.Unmarshal(b, &cp)
	cp.Version = run.Version
	h.mu.Lock()
	// Operate and the workers tell of their saves from their own goroutines, so a report can
	// arrive after a later one: keep the newest version.
	if last := h.last[run.Key()]; last == nil || last.Version <= cp.Version {
		h.last[run.Key()] = &cp
	}
	h.mu.Unlock()
	select {
	case h.change <- struct{}{}:
	default:
	}
}

// start stores the run written in YAML and has the engine run it.
func (h *harness) start(doc string) engine.Key {
	h.t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		h.t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	obj := &v1alpha1.WorkflowRun{}
	if err := json.Unmarshal(b, obj); err != nil {
		h.t.Fatal(err)
	}
	if obj.Namespace == "" {
		obj.Namespace = "default"
	}
	run := &engine.Run{Object: obj}
	if err := h.store.Save(context.Background(), run, nil); err != nil {
		h.t.Fatal(err)
	}
	h.eng.Enqueue(run.Key())
	return run.Key()
}

// operate applies an operation to the stored run, as a user's command does.
func (h *harness) operate(key engine.Key, op engine.Operation) error {
	_, err := h.eng.Operate(context.Background(), key, op)
	return err
}

// waitFor blocks until the last saved state of the run satisfies ok, and returns it.
func (h *harness) waitFor(key engine.Key, what string, ok func(*engine.Run) bool) *engine.Run {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		h.mu.Lock()
		run := h.last[key]
		h.mu.Unlock()
		if run != nil && ok(run) {
			return run
		}
		select {
		case <-h.change:
		case <-time.After(5 * time.Millisecond): // some conditions read the script, not the run
		case <-deadline:
			h.t.Fatalf("run %s never reached: %s; last status: %s", key, what, dump(run))
		}
	}
}

func (h *harness) waitPhase(key engine.Key, phase v1alpha1.WorkflowRunPhase) *engine.Run {
	h.t.Helper()
	return h.waitFor(key, "phase "+string(phase), func(r *engine.Run) bool {
		return r.Object.Status.Phase == phase && !h.eng.Busy(key)
	})
}

func (h *harness) waitSettled(key engine.Key) *engine.Run {
	h.t.Helper()
	return h.waitFor(key, "settled", func(r *engine.Run) bool { return engine.Settled(r) && !h.eng.Busy(key) })
}

func dump(run *engine.Run) string {
	if run == nil {
		return "<none>"
	}
	var b strings.Builder
	st := run.Object.Status
	fmt.Fprintf(&b, "%s (%s)", st.Phase, st.Message)
	for _, s := range st.Steps {
		fmt.Fprintf(&b, "\n  %s %s %s %s", s.Name, s.Phase, s.Reason, s.Message)
		for _, ss := range s.SubStepsStatus {
			fmt.Fprintf(&b, "\n    %s %s %s %s", ss.Name, ss.Phase, ss.Reason, ss.Message)
		}
	}
	return b.String()
}

// phases renders "name=phase[/reason]" for every step, sub-steps after their group.
func phases(run *engine.Run) string {
	var parts []string
	add := func(s v1alpha1.StepStatus) {
		p := s.Name + "=" + string(s.Phase)
		if s.Reason != "" {
			p += "/" + s.Reason
		}
		parts = append(parts, p)
	}
	for _, s := range run.Object.Status.Steps {
		add(s.StepStatus)
		for _, ss := range s.SubStepsStatus {
			add(ss)
		}
	}
	return strings.Join(parts, " ")
}

func varOf(run *engine.Run, name string) string {
	return string(run.Vars[name])
}
