// cache.go: steps with a cache (v1alpha1.StepCache). Before such a step is evaluated its key
// is evaluated (KeyEvaluator) and looked up (Cache): a result younger than the step's maxAge
// is the step's success, with reason Cached, and nothing of the step runs. The worker that
// launches the step looks first (cacheHit, from releaseQuick), so that a hit is one
// transition with the step's start; on a miss the launched evaluation looks again (the entry
// may have come meanwhile) before it runs the step, and keeps its success under its key.

package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/redact"
)

// CacheKey is the key a step's result is kept under: the hex SHA-256 of its type and of its
// evaluated key (JSON), so that steps of different types never share a result.
func CacheKey(stepType string, value json.RawMessage) string {
	h := sha256.New()
	h.Write([]byte(stepType))
	h.Write([]byte{0})
	h.Write(value)
	return hex.EncodeToString(h.Sum(nil))
}

// cacheHit looks the step's key up: the result it returns, when ok, is the step's success
// taken from the cache. Anything else (a miss, an entry too old, a key or a cache that fails)
// is not ok: the step is then launched, and its evaluation (cachedRunner) looks again and
// reports a key's error.
func (e *Engine) cacheHit(ctx context.Context, cc *v1alpha1.StepCache, req *StepRequest) (*StepResult, bool) {
	maxAge, err := time.ParseDuration(cc.MaxAge)
	if err != nil || maxAge <= 0 {
		return nil, false
	}
	key, err := e.cacheKey(ctx, cc, req)
	if err != nil {
		return nil, false
	}
	res, _ := e.lookup(ctx, req, key, maxAge)
	return res, res != nil
}

// lookup returns the result of the cache's entry under key when there is one younger than
// maxAge that has every output the step declares, or nil. A cache that cannot be read is logged and answers nil: it costs time, never
// a result.
func (e *Engine) lookup(ctx context.Context, req *StepRequest, key string, maxAge time.Duration) (*StepResult, error) {
	entry, err := e.opts.Cache.CachedResult(ctx, req.Run.Namespace, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		e.opts.Logger.Warn("read the step cache", "run", req.Run, "step", req.Step.Name, "err", err)
		return nil, err
	case e.opts.Clock.Now().Sub(entry.Created) >= maxAge || entry.StepType != req.Step.Type:
		return nil, nil
	}
	for _, o := range req.Step.Outputs {
		if _, ok := entry.Outputs[o.Name]; !ok {
			return nil, nil // the step outputs what the kept result has not: it runs
		}
	}
	return &StepResult{
		Outcome:   Succeeded,
		Reason:    v1alpha1.ReasonCached,
		Outputs:   entry.Outputs,
		VarWrites: entry.VarWrites,
		Logs: []LogEntry{{Time: e.opts.Clock.Now(), Step: req.Step.Name, Severity: SeverityInfo, Outcome: "cached",
			Message: fmt.Sprintf("cached result of %s/%s from %s", entry.Run, entry.Step, entry.Created.UTC().Format(time.RFC3339))}},
	}, nil
}

// cachedRunner wraps runStep with the step's cache: a hit is the step's result, a miss runs
// the step and keeps its success.
func (e *Engine) cachedRunner(cc *v1alpha1.StepCache, runStep func(context.Context, *StepRequest) (*StepResult, error)) func(context.Context, *StepRequest) (*StepResult, error) {
	return func(ctx context.Context, req *StepRequest) (*StepResult, error) {
		maxAge, err := time.ParseDuration(cc.MaxAge)
		if err != nil || maxAge <= 0 {
			return nil, Terminal(v1alpha1.ReasonParameter, fmt.Errorf("cache.maxAge %q: a Go duration more than zero", cc.MaxAge))
		}
		key, err := e.cacheKey(ctx, cc, req)
		if err != nil {
			return nil, err
		}
		if res, _ := e.lookup(ctx, req, key, maxAge); res != nil {
			return res, nil
		}
		res, err := runStep(ctx, req)
		if err != nil || res == nil || res.Outcome != Succeeded {
			return res, err
		}
		e.keep(ctx, req, key, res)
		return res, nil
	}
}

// cacheKey evaluates the step's key over its parameter, inputs and context.
func (e *Engine) cacheKey(ctx context.Context, cc *v1alpha1.StepCache, req *StepRequest) (string, error) {
	value, err := evalStepKey(ctx, e.opts.CacheKeys, "cache.key", cc.Key, req)
	if err != nil {
		return "", err
	}
	return CacheKey(req.Step.Type, value), nil
}

// evalStepKey evaluates expr, the step's field (cache.key, concurrency.key), over the step's
// parameter, inputs and context as req has them. An error names the field; a TerminalError
// stays one, whatever is tried again.
func evalStepKey(ctx context.Context, keys KeyEvaluator, field, expr string, req *StepRequest) (json.RawMessage, error) {
	var param any = map[string]any{}
	if len(req.Properties) > 0 {
		if err := json.Unmarshal(req.Properties, &param); err != nil {
			return nil, Terminal(v1alpha1.ReasonParameter, fmt.Errorf("%s: reading the parameter: %w", field, err))
		}
	}
	inputs := map[string]any{}
	maps.Copy(inputs, req.Inputs)
	scope := map[string]any{"parameter": param, "inputs": inputs, "context": req.Context}
	value, err := keys.EvalKey(ctx, expr, scope)
	if err != nil {
		if te, ok := errors.AsType[*TerminalError](err); ok {
			return nil, Terminal(te.Reason, fmt.Errorf("%s: %w", field, te.Err))
		}
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return value, nil
}

// keyName is the name of a concurrency key of the value: a string as it is, any other value
// as its JSON.
func keyName(value json.RawMessage) string {
	var s string
	if json.Unmarshal(value, &s) == nil {
		return s
	}
	return string(value)
}

// keep writes a success of the step into the cache, unless what it would keep holds one of
// the run's sensitive values: a cache entry is listed and read by whoever may see the
// namespace's cache, and a redacted value would be wrong for the steps that take it.
func (e *Engine) keep(ctx context.Context, req *StepRequest, key string, res *StepResult) {
	entry := &CacheEntry{
		Namespace: req.Run.Namespace,
		Key:       key,
		StepType:  req.Step.Type,
		Run:       req.Run.Name,
		Step:      req.Step.Name,
		Created:   e.opts.Clock.Now(),
		Outputs:   res.Outputs,
		VarWrites: res.VarWrites,
	}
	if sensitive := redact.Merge(req.Sensitive, res.Sensitive...); len(sensitive) > 0 {
		data, err := json.Marshal(entry)
		if err != nil || string(redact.New(sensitive...).JSON(data)) != string(data) {
			res.Logs = append(res.Logs, LogEntry{Time: entry.Created, Step: req.Step.Name, Severity: SeverityInfo,
				Message: "the result is not cached: its outputs hold a sensitive value"})
			return
		}
	}
	if err := e.opts.Cache.PutCachedResult(ctx, entry); err != nil {
		e.opts.Logger.Warn("write the step cache", "run", req.Run, "step", req.Step.Name, "err", err)
		res.Logs = append(res.Logs, LogEntry{Time: entry.Created, Step: req.Step.Name, Severity: SeverityWarning,
			Message: "the result is not cached: " + err.Error()})
	}
}
