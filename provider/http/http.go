// Package http supplies the CUE package vela/http: #HTTPDo (and #HTTPGet, #HTTPPost, #HTTPPut,
// #HTTPDelete) sends one HTTP request and returns the response's status code, headers, trailers
// and body to the definition.
//
// A status that is not 2xx is a result, not an error, so that a definition can wait on it. A
// request that could not be sent or answered (connection refused, DNS, timeout) and a request over
// its rate limit are plain errors, which the engine retries with backoff. Parameters that can never
// work (a malformed URL, an unknown method, a body over the bound) fail the step at once.
//
// request.headersFromSecret and tls_config read Secrets of the local cluster through
// Options.Clusters, as the kube provider reaches it; without a cluster they fail the step
// saying so. What they read is marked sensitive. A request with tls_config goes through a copy of
// the client's transport, so it dials as every other request does (through the egress policy).
package http

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	nethttp "net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/step"
)

//go:embed http.cue
var source string

// Defaults used when the corresponding Options field is zero.
const (
	DefaultMaxBodyBytes = 10 << 20
	DefaultTimeout      = 3 * time.Second
)

// Options configure the provider; the zero value works.
type Options struct {
	// MaxBodyBytes bounds the response body an action may read; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// DefaultTimeout bounds a request that sets no request.timeout; 0 means DefaultTimeout.
	DefaultTimeout time.Duration
	// Client sends the requests; nil means a client with Go's default transport, which
	// verifies TLS certificates. A request with tls_config is sent through a copy of its
	// transport, which must then be an *http.Transport.
	Client *nethttp.Client
	// Clusters reaches the local cluster ("") whose Secrets request.headersFromSecret and
	// tls_config read; nil means those parameters fail the step saying no cluster is
	// configured.
	Clusters kube.Clusters
}

// shown is how a URL appears in errors: its scheme and host only, as a webhook's path or query
// is often its secret (Slack's, for one), and errors end up in status and logs.
func shown(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/<redacted>"
	}
	return s
}

// maxExcerpt bounds the part of an answer's body that the log keeps: enough for an error
// message or a small JSON document, not a page.
const maxExcerpt = 1024

// answer is the detail of an HTTP action's log line.
type answer struct {
	Status      int    `json:"status"`
	ContentType string `json:"contentType,omitempty"`
	// Bytes is the body's whole length; Body its first maxExcerpt bytes, cut at a character.
	Bytes int    `json:"bytes"`
	Body  string `json:"body,omitempty"`
}

// excerpt is the first n bytes of body as text, cut before a character that would not fit,
// with "…" when it was cut.
func excerpt(body []byte, n int) string {
	if len(body) <= n {
		return strings.ToValidUTF8(string(body), "\uFFFD")
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(body[cut]) {
		cut--
	}
	return strings.ToValidUTF8(string(body[:cut]), "\uFFFD") + "…"
}

// display is a request's URL as its log line shows it: host and path, and the query's names
// with their values hidden (tokens often travel there). A URL with a secret of the run in it
// (one read from a Secret, say) shows only its scheme and host, as errors do.
func display(call *step.Call, raw string, u *url.URL) string {
	if call.Redact(raw) != raw {
		return shown(u)
	}
	s := u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		names := slices.Sorted(maps.Keys(u.Query()))
		for i, n := range names {
			names[i] = n + "=<redacted>"
		}
		s += "?" + strings.Join(names, "&")
	}
	return s
}

// Register adds the package (import path "vela/http") and its action http.do to r.
func Register(r *step.Registry, opts Options) {
	p := &provider{
		client:   opts.Client,
		clusters: opts.Clusters,
		maxBody:  opts.MaxBodyBytes,
		timeout:  opts.DefaultTimeout,
		limiters: newRateLimiter(),
	}
	if p.client == nil {
		p.client = &nethttp.Client{}
	}
	if p.maxBody <= 0 {
		p.maxBody = DefaultMaxBodyBytes
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	r.AddPackage(step.Package{Path: "vela/http", Source: source})
	r.Register(step.Action{
		Provider:      "http",
		Do:            "do",
		Run:           p.do,
		SideEffect:    changesSomething,
		LegacyResult:  "response",
		LegacyOutputs: []string{"response"},
	})
}

// changesSomething reports whether the request's method may change something on the server:
// every method but GET and HEAD.
func changesSomething(params map[string]any) bool {
	m, _ := params["method"].(string)
	switch strings.ToUpper(m) {
	case "", nethttp.MethodGet, nethttp.MethodHead:
		return false
	}
	return true
}

// provider holds what the action keeps between calls: the client and the rate limiters.
type provider struct {
	client   *nethttp.Client
	clusters kube.Clusters
	maxBody  int64
	timeout  time.Duration
	limiters *rateLimiter
}

// params are the action's parameters, as in http.cue.
type params struct {
	Method  string `json:"method"`
	URL     string `json:"url"`
	Request *struct {
		Timeout           string            `json:"timeout"`
		Body              *string           `json:"body"`
		Header            map[string]values `json:"header"`
		Trailer           map[string]values `json:"trailer"`
		RateLimiter       *rateLimit        `json:"ratelimiter"`
		HeadersFromSecret []headerSecret    `json:"headersFromSecret"`
	} `json:"request"`
	TLSConfig *tlsParams `json:"tls_config"`
}

type rateLimit struct {
	Limit  int    `json:"limit"`
	Period string `json:"period"`
	Key    string `json:"key"`
}

// values are a header's values, written in CUE as a string or a list of strings.
type values []string

func (v *values) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*v = values{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("a header value must be a string or a list of strings")
	}
	*v = many
	return nil
}

// response is what the action returns, as in http.cue's $returns.
type response struct {
	Body       string              `json:"body"`
	Header     map[string][]string `json:"header,omitempty"`
	Trailer    map[string][]string `json:"trailer,omitempty"`
	StatusCode int                 `json:"statusCode"`
}

var methods = map[string]bool{
	nethttp.MethodGet: true, nethttp.MethodPost: true, nethttp.MethodPut: true,
	nethttp.MethodDelete: true, nethttp.MethodHead: true, nethttp.MethodPatch: true,
}

func (p *provider) do(ctx context.Context, call *step.Call) (any, error) {
	var in params
	if err := call.Decode(&in); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/http: %w", err))
	}
	req, err := p.newRequest(ctx, &in)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/http: %w", err))
	}
	client, err := p.withSecrets(ctx, call, &in, req)
	if err != nil {
		return nil, err
	}
	timeout := p.timeout
	if in.Request != nil && in.Request.Timeout != "" {
		timeout, err = time.ParseDuration(in.Request.Timeout)
		if err != nil || timeout <= 0 {
			return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/http: request.timeout %q is not a positive Go duration such as \"10s\"", in.Request.Timeout))
		}
	}
	if in.Request != nil && in.Request.RateLimiter != nil {
		if err := p.checkRate(call, req, in.Request.RateLimiter); err != nil {
			return nil, err
		}
	}

	target := req.Method + " " + display(call, in.URL, req.URL)
	call.Report(step.Report{Summary: target})
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // its text repeats the method and URL, which the message below gives
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("vela/http: %s %s: no answer within %s (set request.timeout, or the request step's timeout, to wait longer): %w", req.Method, shown(req.URL), timeout, err)
		}
		return nil, fmt.Errorf("vela/http: %s %s: %w", req.Method, shown(req.URL), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("vela/http: %s %s: reading the response body: %w", req.Method, shown(req.URL), err)
	}
	if int64(len(body)) > p.maxBody {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/http: %s %s: the response body is larger than %d bytes, the provider's bound; raise it with the http provider's MaxBodyBytes option", req.Method, shown(req.URL), p.maxBody))
	}
	rep := step.Report{
		Summary: fmt.Sprintf("%s → %s", target, resp.Status),
		Data:    answer{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Bytes: len(body), Body: excerpt(body, maxExcerpt)},
	}
	if resp.StatusCode >= 400 {
		rep.Severity = engine.SeverityWarning
	}
	call.Report(rep)
	return &response{
		Body:       string(body),
		Header:     sent(resp.Header),
		Trailer:    sent(resp.Trailer),
		StatusCode: resp.StatusCode,
	}, nil
}

// newRequest checks the parameters that no retry can mend and builds the request.
func (p *provider) newRequest(ctx context.Context, in *params) (*nethttp.Request, error) {
	method := strings.ToUpper(in.Method)
	if method == "" {
		method = nethttp.MethodGet
	}
	if !methods[method] {
		return nil, fmt.Errorf("method %q is not supported: use GET, POST, PUT, DELETE, HEAD or PATCH", in.Method)
	}
	u, err := url.Parse(in.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q is not an absolute http or https URL", in.URL)
	}

	var body io.Reader
	var header, trailer nethttp.Header
	if r := in.Request; r != nil {
		if r.Body != nil {
			body = strings.NewReader(*r.Body)
		}
		header = canonical(r.Header)
		trailer = canonical(r.Trailer)
	}
	if trailer != nil && body == nil {
		body = strings.NewReader("")
	}
	req, err := nethttp.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	if header != nil {
		req.Header = header
		req.Host = header.Get("Host") // Go sends req.Host, never a Host header
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if trailer != nil {
		// Trailers go out only with a chunked body, which an unknown length asks for.
		req.Trailer = trailer
		req.ContentLength = -1
	}
	return req, nil
}

// checkRate refuses the request when its limiter has already allowed limit requests in the
// last period.
func (p *provider) checkRate(call *step.Call, req *nethttp.Request, rl *rateLimit) error {
	period, err := time.ParseDuration(rl.Period)
	if err != nil || period <= 0 {
		return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/http: request.ratelimiter.period %q is not a positive Go duration such as \"1m\"", rl.Period))
	}
	if rl.Limit <= 0 {
		return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/http: request.ratelimiter.limit must be at least 1, got %d", rl.Limit))
	}
	key := rl.Key
	if key == "" {
		u := *req.URL
		u.RawQuery, u.Fragment = "", ""
		key = req.Method + " " + u.String()
	}
	now := time.Now()
	if call.Session != nil {
		now = call.Session.Now()
	}
	if !p.limiters.allow(key, now, rl.Limit, period) {
		return fmt.Errorf("vela/http: %s %s: rate limited: %q already made %d requests in the last %s", req.Method, shown(req.URL), key, rl.Limit, period)
	}
	return nil
}

// canonical turns header values as written in CUE into a header; nil for none.
func canonical(m map[string]values) nethttp.Header {
	if len(m) == 0 {
		return nil
	}
	h := nethttp.Header{}
	for k, vs := range m {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return h
}

// sent drops the names a server announced without sending values, which CUE's [...string]
// would not accept as null; nil for none.
func sent(h nethttp.Header) map[string][]string {
	out := map[string][]string{}
	for k, vs := range h {
		if vs != nil {
			out[k] = vs
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
