// Package metrics supplies the CUE package vela/metrics: #PromCheck queries a Prometheus HTTP
// API (/api/v1/query) and tells whether a condition on the result has held long enough, or
// failed long enough, for a step to go on or to give up. The same action serves the legacy
// op.#PromCheck.
//
// The check is a read: it runs at every evaluation of the step. When the condition first held
// and when it first failed are kept in a run variable between evaluations (keyed by the
// step's session id, or by the step and the action's path), with the engine's clock, so that
// waiting and retrying work across evaluations and across a restart of the process.
//
// A server that cannot be reached, a timeout and a 5xx are plain errors, retried with backoff.
// A query Prometheus rejects (a PromQL syntax error), any other 4xx, a bad condition or
// duration fail the step at once with Prometheus's message. The endpoint's path, query and
// credentials never appear in an error: it shows as scheme://host/<redacted>.
package metrics

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

//go:embed metrics.cue
var source string

// Defaults used when the corresponding Options field is zero.
const (
	DefaultEndpoint = "http://prometheus-server.o11y-system.svc:9090"
	DefaultTimeout  = 10 * time.Second
	maxBody         = 10 << 20
)

// Options configure the provider; the zero value works.
type Options struct {
	// Client sends the queries; nil means a client with Go's default transport.
	Client *http.Client
	// Timeout bounds one query; 0 means DefaultTimeout.
	Timeout time.Duration
	// DefaultEndpoint is the Prometheus base URL of a check that gives none (the legacy form
	// may leave it out); empty means DefaultEndpoint, KubeVela's.
	DefaultEndpoint string
}

// Register adds the package (import path "vela/metrics") and its action metrics.promCheck to r.
func Register(r *step.Registry, opts Options) {
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.DefaultEndpoint == "" {
		opts.DefaultEndpoint = DefaultEndpoint
	}
	c := &checker{opts: opts}
	r.AddPackage(step.Package{Path: "vela/metrics", Source: source})
	r.Register(step.Action{
		Provider:      "metrics",
		Do:            "promCheck",
		Run:           c.check,
		LegacyOutputs: []string{"result", "failed", "message"},
	})
}

type checker struct{ opts Options }

// params are #PromCheck's parameters.
type params struct {
	Query          string `json:"query"`
	MetricEndpoint string `json:"metricEndpoint"`
	Condition      string `json:"condition"`
	FailDuration   string `json:"failDuration"`
	Duration       string `json:"duration"`
	StepID         string `json:"stepID"`
}

// checkResult is what #PromCheck returns.
type checkResult struct {
	Result  bool   `json:"result"`
	Failed  bool   `json:"failed"`
	Message string `json:"message,omitempty"`
}

// streak is what the run keeps between evaluations: since when the condition has held, or
// has failed (one of them is zero).
type streak struct {
	HeldSince   time.Time `json:"heldSince,omitzero"`
	FailedSince time.Time `json:"failedSince,omitzero"`
}

func (c *checker) check(ctx context.Context, call *step.Call) (any, error) {
	var in params
	if err := call.Decode(&in); err != nil {
		return nil, terminal(fmt.Errorf("vela/metrics: %w", err))
	}
	cond, err := parseCondition(in.Condition)
	if err != nil {
		return nil, terminal(fmt.Errorf("vela/metrics: condition: %w", err))
	}
	hold, err := duration("duration", in.Duration, 5*time.Minute)
	if err != nil {
		return nil, terminal(err)
	}
	failFor, err := duration("failDuration", in.FailDuration, 2*time.Minute)
	if err != nil {
		return nil, terminal(err)
	}
	endpoint := in.MetricEndpoint
	if endpoint == "" {
		endpoint = c.opts.DefaultEndpoint
	}
	values, err := c.query(ctx, endpoint, in.Query)
	if err != nil {
		return nil, err
	}
	held, message := cond.holds(values)

	key := "stepflow.metrics/" + in.StepID
	if in.StepID == "" {
		key = "stepflow.metrics/" + call.Step + "/" + call.Path
	}
	var s streak
	var now time.Time
	if call.Session != nil {
		now = call.Session.Now()
		if raw, ok := call.Session.Var(key); ok {
			_ = json.Unmarshal(raw, &s) // an unreadable record starts again
		}
	} else {
		now = time.Now()
	}
	out := &checkResult{}
	if held {
		s.FailedSince = time.Time{}
		if s.HeldSince.IsZero() {
			s.HeldSince = now
		}
		out.Result = !now.Before(s.HeldSince.Add(hold))
		out.Message = fmt.Sprintf("%s; held for %s of %s", message, now.Sub(s.HeldSince).Round(time.Second), hold)
	} else {
		s.HeldSince = time.Time{}
		if s.FailedSince.IsZero() {
			s.FailedSince = now
		}
		out.Failed = !now.Before(s.FailedSince.Add(failFor))
		out.Message = fmt.Sprintf("%s; failing for %s of %s", message, now.Sub(s.FailedSince).Round(time.Second), failFor)
	}
	if call.Session != nil {
		b, _ := json.Marshal(s)
		call.Session.SetVar(key, b)
	}
	return out, nil
}

// duration reads a Go duration parameter; empty means def.
func duration(name, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("vela/metrics: %s %q is not a Go duration such as \"5m\"", name, s)
	}
	return d, nil
}

// apiResponse is the envelope of Prometheus's HTTP API.
type apiResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// query runs an instant query and returns its values: one per series, or the scalar.
func (c *checker) query(ctx context.Context, endpoint, q string) ([]float64, error) {
	base, err := url.Parse(endpoint)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, terminal(fmt.Errorf("vela/metrics: metricEndpoint %s is not an absolute http or https URL", redact(endpoint)))
	}
	u := base.JoinPath("api", "v1", "query")
	u.RawQuery = url.Values{"query": {q}}.Encode()
	where := redact(endpoint)

	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, terminal(fmt.Errorf("vela/metrics: querying %s: %w", where, err))
	}
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // its text holds the whole URL
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("vela/metrics: querying %s: no answer within %s", where, c.opts.Timeout)
		}
		return nil, fmt.Errorf("vela/metrics: querying %s: %w", where, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("vela/metrics: querying %s: reading the answer: %w", where, err)
	}
	var ar apiResponse
	jsonErr := json.Unmarshal(body, &ar)
	switch {
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("vela/metrics: querying %s: status %d: %s", where, resp.StatusCode, remoteMessage(&ar, body))
	case resp.StatusCode >= 400:
		return nil, terminal(fmt.Errorf("vela/metrics: query %q rejected by %s: status %d: %s", q, where, resp.StatusCode, remoteMessage(&ar, body)))
	case jsonErr != nil || ar.Status != "success":
		return nil, terminal(fmt.Errorf("vela/metrics: %s did not answer as a Prometheus API: %s", where, remoteMessage(&ar, body)))
	}
	return values(ar.Data.ResultType, ar.Data.Result)
}

// values reads the samples of a vector or a scalar result.
func values(typ string, raw json.RawMessage) ([]float64, error) {
	var samples [][2]any
	switch typ {
	case "vector":
		var series []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(raw, &series); err != nil {
			return nil, terminal(fmt.Errorf("vela/metrics: reading the vector: %w", err))
		}
		for _, s := range series {
			samples = append(samples, s.Value)
		}
	case "scalar":
		var s [2]any
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, terminal(fmt.Errorf("vela/metrics: reading the scalar: %w", err))
		}
		samples = append(samples, s)
	default:
		return nil, terminal(fmt.Errorf("vela/metrics: the query returns a %s; write one that returns an instant vector or a scalar", typ))
	}
	out := make([]float64, 0, len(samples))
	for _, s := range samples {
		str, _ := s[1].(string)
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, terminal(fmt.Errorf("vela/metrics: sample value %v is not a number", s[1]))
		}
		out = append(out, f)
	}
	return out, nil
}

// remoteMessage is Prometheus's error text, or the start of the body.
func remoteMessage(ar *apiResponse, body []byte) string {
	if ar.Error != "" {
		if ar.ErrorType != "" {
			return ar.ErrorType + ": " + ar.Error
		}
		return ar.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// redact shows a URL as its scheme and host only.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<redacted URL>"
	}
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		s += "/<redacted>"
	}
	return s
}

// condition is a comparison with a number.
type condition struct {
	op     string
	number float64
}

// parseCondition reads ">=0.95", "< 5", "==1" and the like.
func parseCondition(s string) (condition, error) {
	s = strings.TrimSpace(s)
	for _, op := range []string{">=", "<=", "==", "!=", ">", "<", "="} {
		if rest, ok := strings.CutPrefix(s, op); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil || math.IsNaN(n) {
				break
			}
			if op == "=" {
				op = "=="
			}
			return condition{op, n}, nil
		}
	}
	return condition{}, fmt.Errorf("%q: want an operator (>=, >, <=, <, ==, !=) and a number, e.g. \">=0.95\"", s)
}

// holds reports whether every value meets the condition; no value at all does not.
func (c condition) holds(vs []float64) (bool, string) {
	if len(vs) == 0 {
		return false, "the query returned no data"
	}
	for _, v := range vs {
		ok := false
		switch c.op {
		case ">=":
			ok = v >= c.number
		case "<=":
			ok = v <= c.number
		case ">":
			ok = v > c.number
		case "<":
			ok = v < c.number
		case "==":
			ok = v == c.number
		case "!=":
			ok = v != c.number
		}
		if !ok {
			return false, fmt.Sprintf("value %s does not meet %s%s", format(v), c.op, format(c.number))
		}
	}
	if len(vs) == 1 {
		return true, fmt.Sprintf("value %s meets %s%s", format(vs[0]), c.op, format(c.number))
	}
	return true, fmt.Sprintf("all %d values meet %s%s", len(vs), c.op, format(c.number))
}

func format(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func terminal(err error) error { return engine.Terminal(v1alpha1.ReasonExecute, err) }
