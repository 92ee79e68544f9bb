// Package external runs the actions of external packages (KubeVela's Package kind with a
// provider): an action's `$params` are POSTed as JSON to `<endpoint>/<#do>`, as KubeVela does,
// and the JSON answer becomes its `$returns`. It is the step runtime's step.External, given a
// client behind the operator's egress policy by the assembly.
package external

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// DefaultMaxBodyBytes bounds an answer when Options.MaxBodyBytes is 0: 10 MiB, as vela/http.
const DefaultMaxBodyBytes = 10 << 20

// maxExcerpt is how much of a request and an answer a log line shows.
const maxExcerpt = 512

// Options configure the Provider.
type Options struct {
	// Client makes the requests; nil means one with http.DefaultTransport. The assembly gives
	// the egress policy's (egress.Policy.Client).
	Client *http.Client
	// MaxBodyBytes bounds the answer read; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Provider calls external providers over HTTP. It implements step.External.
type Provider struct {
	client  *http.Client
	maxBody int64
}

// New returns a Provider.
func New(opts Options) *Provider {
	p := &Provider{client: opts.Client, maxBody: opts.MaxBodyBytes}
	if p.client == nil {
		p.client = &http.Client{Transport: http.DefaultTransport}
	}
	if p.maxBody <= 0 {
		p.maxBody = DefaultMaxBodyBytes
	}
	return p
}

// exchange is what a log line shows of a call: the request's and the answer's beginnings.
type exchange struct {
	Request string `json:"request"`
	Status  int    `json:"status,omitempty"`
	Bytes   int    `json:"bytes,omitempty"`
	Answer  string `json:"answer,omitempty"`
}

// Call implements step.External. A 2xx answer's JSON is the result (an empty one, none); a 4xx
// fails the step at once with the answer's message; a 5xx, or no answer, is a provider error,
// which the engine retries. The call ends with ctx (the step's evaluation bound).
func (p *Provider) Call(ctx context.Context, pkg *step.ExternalPackage, do string, call *step.Call) (any, error) {
	var params json.RawMessage
	if err := call.Decode(&params); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, err)
	}
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	target := strings.TrimSuffix(pkg.Endpoint, "/") + "/" + url.PathEscape(do)
	name := fmt.Sprintf("provider %s (Package %s)", pkg.Name, pkg.Path)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(params))
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: endpoint %q: %w", name, pkg.Endpoint, err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	shown := "POST " + req.URL.Host + req.URL.EscapedPath()
	ex := exchange{Request: excerpt(params, maxExcerpt)}
	call.Report(step.Report{Summary: shown, Data: ex})
	resp, err := p.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // its text repeats the method and URL
		}
		return nil, fmt.Errorf("%s: POST %s: %w", name, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s: POST %s: reading the answer: %w", name, target, err)
	}
	if int64(len(body)) > p.maxBody {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: POST %s: the answer is larger than %d bytes, the bound of external providers' answers", name, target, p.maxBody))
	}
	ex.Status, ex.Bytes, ex.Answer = resp.StatusCode, len(body), excerpt(body, maxExcerpt)
	rep := step.Report{Summary: fmt.Sprintf("%s → %s", shown, resp.Status), Data: ex}
	if resp.StatusCode >= 300 {
		rep.Severity = engine.SeverityWarning
	}
	call.Report(rep)
	switch {
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("%s: POST %s: %s: %s", name, target, resp.Status, message(body))
	case resp.StatusCode >= 300:
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: POST %s: %s: %s", name, target, resp.Status, message(body)))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var out any
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: POST %s: the answer is not JSON: %w", name, target, err))
	}
	return out, nil
}

// message is what an error answer says: its JSON `message` or `error` field, else its text.
func message(body []byte) string {
	var m struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &m) == nil {
		if m.Message != "" {
			return m.Message
		}
		if m.Error != "" {
			return m.Error
		}
	}
	if s := strings.TrimSpace(excerpt(body, maxExcerpt)); s != "" {
		return s
	}
	return "(no message)"
}

// excerpt is the first n bytes of b as text, cut before a character that would not fit, with
// "…" when it was cut.
func excerpt(b []byte, n int) string {
	if len(b) <= n {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return strings.ToValidUTF8(string(b[:cut]), "\uFFFD") + "…"
}
