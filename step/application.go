// application.go: the CUE of an Application's delivery (package application's Render and
// Health: definitions' templates, traits' patches, health policies and custom statuses),
// evaluated in a child evaluator like every CUE a user may write. The definitions are looked
// up and the live objects read here; they travel to the child as JSON, the rendered
// components and the status come back.

package step

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
)

// Render renders an Application's components as application.Render does, under the bounds of
// an evaluation (Options.EvalTimeout, EvalMemory), in a child evaluator unless the Runner
// evaluates in process. A bound passed is an error naming it and its flag. The Runner is an
// application.Evaluator.
func (r *Runner) Render(ctx context.Context, req application.Request) ([]*application.Component, error) {
	if r.pool == nil {
		return application.Render(ctx, req)
	}
	job, err := application.NewRenderJob(ctx, req)
	if err != nil {
		return nil, err
	}
	// A render is a function of its job alone (definitions, Application, target, revision,
	// workflow and step): a deploy step evaluated again while its components get ready, or
	// the lifecycle judging health, renders what it rendered before.
	in, err := json.Marshal(job)
	if err != nil {
		return nil, fmt.Errorf("encoding the rendering of Application %s: %w", req.App.Name, err)
	}
	key := sha256.Sum256(in)
	if comps, ok := r.renders.get(key); ok {
		return comps, nil
	}
	what := fmt.Sprintf("the rendering of Application %s", req.App.Name)
	var rep reply
	err = r.pool.oneShot(ctx, r.opts.EvalTimeout, what, &request{Render: job}, &rep)
	switch {
	case err != nil:
		return nil, err
	case rep.Rendered == nil:
		return nil, fmt.Errorf("%w: an unexpected reply", ErrUnavailable)
	case rep.Rendered.Error != "":
		return nil, errors.New(rep.Rendered.Error)
	}
	r.renders.put(key, rep.Rendered.Components)
	return rep.Rendered.Components, nil
}

// The bounds of a Runner's cache of renders: enough for the components of some hundred
// Applications in two clusters each, at most a few MiB.
const (
	maxRenders     = 512
	maxRenderBytes = 16 << 20
)

// renderCache keeps the components of recent renders, by the hash of their job, encoded so
// that each caller gets a copy of its own to change. Safe for concurrent use.
type renderCache struct {
	mu    sync.Mutex
	byKey map[[32]byte][]byte
	order [][32]byte // oldest first
	bytes int
}

// get returns a copy of the components rendered for key.
func (c *renderCache) get(key [32]byte) ([]*application.Component, bool) {
	c.mu.Lock()
	b, ok := c.byKey[key]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	var comps []*application.Component
	if err := json.Unmarshal(b, &comps); err != nil {
		return nil, false
	}
	return comps, true
}

// put keeps comps for key, forgetting the oldest renders past the cache's bounds; a render
// too large for them is not kept.
func (c *renderCache) put(key [32]byte, comps []*application.Component) {
	b, err := json.Marshal(comps)
	if err != nil || len(b) > maxRenderBytes/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil {
		c.byKey = map[[32]byte][]byte{}
	}
	if _, ok := c.byKey[key]; ok {
		return
	}
	c.byKey[key] = b
	c.order = append(c.order, key)
	c.bytes += len(b)
	for len(c.order) > maxRenders || c.bytes > maxRenderBytes {
		old := c.order[0]
		c.order = c.order[1:]
		c.bytes -= len(c.byKey[old])
		delete(c.byKey, old)
	}
}

// Health judges a rendered component against its live objects as application.Health does,
// under the bounds of an evaluation, in a child evaluator unless the Runner evaluates in
// process. live is called here, for each of the component's objects, before the child is
// asked; a component whose definitions have no health policy nor custom status is judged
// here, without CUE.
func (r *Runner) Health(ctx context.Context, defs application.Definitions, namespace string, c *application.Component,
	live application.Live) (v1beta1.ApplicationComponentStatus, error) {
	if r.pool == nil {
		return application.Health(ctx, defs, namespace, c, live)
	}
	job, err := application.NewHealthJob(ctx, defs, namespace, c, live)
	if err != nil {
		return v1beta1.ApplicationComponentStatus{}, err
	}
	if !job.Evaluates() {
		return job.Health(ctx)
	}
	what := fmt.Sprintf("the health of component %s", c.Name)
	var rep reply
	err = r.pool.oneShot(ctx, r.opts.EvalTimeout, what, &request{Health: job}, &rep)
	switch {
	case err != nil:
		return v1beta1.ApplicationComponentStatus{}, err
	case rep.Judged == nil:
		return v1beta1.ApplicationComponentStatus{}, fmt.Errorf("%w: an unexpected reply", ErrUnavailable)
	case rep.Judged.Error != "":
		return rep.Judged.Status, errors.New(rep.Judged.Error)
	}
	return rep.Judged.Status, nil
}

// renderJob renders in this process (a child evaluator's).
func renderJob(job *application.RenderJob) *rendered {
	comps, err := job.Render(context.Background())
	if err != nil {
		return &rendered{Error: err.Error()}
	}
	return &rendered{Components: comps}
}

// healthJob judges health in this process (a child evaluator's).
func healthJob(job *application.HealthJob) *judged {
	st, err := job.Health(context.Background())
	if err != nil {
		return &judged{Status: st, Error: err.Error()}
	}
	return &judged{Status: st}
}

// oneShot sends one request to a child and reads its reply, under limit, as describe and x
// do; what names what is evaluated in messages. A bound passed is a plain error naming it.
func (p *pool) oneShot(ctx context.Context, limit time.Duration, what string, req *request, rep *reply) error {
	c, err := p.get(ctx)
	if err != nil {
		return err
	}
	err = p.restarting(ctx, c, func(c *child) error {
		s, cancel := p.with(ctx, c, what, limit)
		defer cancel()
		err := s.exchange(req, rep)
		s.end()
		return err
	})
	return boundError(err)
}
