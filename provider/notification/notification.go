// Package notification supplies the CUE package vela/notification: #Slack, #DingTalk, #Lark and
// #Webhook post a JSON message to an incoming webhook, for the notification step type.
//
// A post is a side effect: within one step attempt it runs once. The services answer failures
// differently, and each is read as documented: Slack with a 4xx and a short text, DingTalk
// with 200 and {"errcode", "errmsg"}, Lark with 200 (or 400) and {"code", "msg"}. A failure
// the service reports, and any other 4xx, fails the step at once with the service's message; a
// 5xx, a 429, a timeout or a server that cannot be reached is a plain error, which the engine
// retries with backoff.
//
// A webhook URL is a secret (whoever has it can post), so no error shows it: it appears as
// scheme://host/<redacted>.
package notification

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

//go:embed notification.cue
var source string

// maxAnswer bounds the part of an answer that is read.
const maxAnswer = 64 << 10

// Options configure the provider; the zero value works.
type Options struct {
	// Client sends the posts (a copy that does not follow redirects); nil means a client
	// with Go's default transport.
	Client *http.Client
}

// Register adds the package (import path "vela/notification") and its actions
// notification.slack, notification.dingtalk, notification.lark and notification.webhook to r.
func Register(r *step.Registry, opts Options) {
	client := &http.Client{}
	if opts.Client != nil {
		c := *opts.Client
		client = &c
	}
	// A post is not repeated elsewhere: a redirect is an answer.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r.AddPackage(step.Package{Path: "vela/notification", Source: source})
	for _, ch := range []channel{slack, dingTalk, lark, webhook} {
		p := &poster{client: client, ch: ch}
		r.Register(step.Action{Provider: "notification", Do: ch.do, Run: p.post, SideEffect: step.Always})
	}
}

// channel is a kind of webhook: how to read its answer.
type channel struct {
	do, name string
	// failure returns the failure a 2xx answer body reports, "" for none.
	failure func(body []byte) string
}

var (
	slack    = channel{do: "slack", name: "Slack", failure: func([]byte) string { return "" }}
	webhook  = channel{do: "webhook", name: "webhook", failure: func([]byte) string { return "" }}
	dingTalk = channel{do: "dingtalk", name: "DingTalk", failure: func(b []byte) string {
		var a struct {
			Code *int   `json:"errcode"`
			Msg  string `json:"errmsg"`
		}
		if json.Unmarshal(b, &a) == nil && a.Code != nil && *a.Code != 0 {
			return fmt.Sprintf("errcode %d: %s", *a.Code, a.Msg)
		}
		return ""
	}}
	lark = channel{do: "lark", name: "Lark", failure: func(b []byte) string {
		var a struct {
			Code *int   `json:"code"`
			Msg  string `json:"msg"`
			// The older form of the answer.
			StatusCode    *int   `json:"StatusCode"`
			StatusMessage string `json:"StatusMessage"`
		}
		if json.Unmarshal(b, &a) != nil {
			return ""
		}
		if a.Code != nil && *a.Code != 0 {
			return fmt.Sprintf("code %d: %s", *a.Code, a.Msg)
		}
		if a.StatusCode != nil && *a.StatusCode != 0 {
			return fmt.Sprintf("code %d: %s", *a.StatusCode, a.StatusMessage)
		}
		return ""
	}}
)

type poster struct {
	client *http.Client
	ch     channel
}

type params struct {
	URL     string          `json:"url"`
	Message json.RawMessage `json:"message"`
	Timeout string          `json:"timeout"`
}

// answer is what an action returns.
type answer struct {
	StatusCode int    `json:"statusCode"`
	Body       string `json:"body"`
}

func (p *poster) post(ctx context.Context, call *step.Call) (any, error) {
	var in params
	if err := call.Decode(&in); err != nil {
		return nil, terminal(fmt.Errorf("vela/notification: %s: %w", p.ch.name, err))
	}
	// Whoever has the URL can post: it is a secret wherever the run shows it, not only here.
	call.Sensitive(in.URL)
	u, err := url.Parse(in.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, terminal(fmt.Errorf("vela/notification: %s: the URL %s is not an absolute http or https URL", p.ch.name, Redact(in.URL)))
	}
	where := p.ch.name + " " + Redact(in.URL)
	call.Report(step.Report{Summary: "post to " + where})
	timeout := 10 * time.Second
	if in.Timeout != "" {
		if timeout, err = time.ParseDuration(in.Timeout); err != nil || timeout <= 0 {
			return nil, terminal(fmt.Errorf("vela/notification: %s: timeout %q is not a positive Go duration such as \"10s\"", where, in.Timeout))
		}
	}
	if len(in.Message) == 0 || string(in.Message) == "null" {
		return nil, terminal(fmt.Errorf("vela/notification: %s: no message", where))
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(in.Message))
	if err != nil {
		return nil, terminal(fmt.Errorf("vela/notification: %s: %w", where, redactErr(err)))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("vela/notification: posting to %s: no answer within %s", where, timeout)
		}
		return nil, fmt.Errorf("vela/notification: posting to %s: %w", where, redactErr(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("vela/notification: posting to %s: reading the answer: %w", where, redactErr(err))
	}
	switch code := resp.StatusCode; {
	case code >= 500 || code == http.StatusTooManyRequests:
		return nil, fmt.Errorf("vela/notification: %s answered %d: %s", where, code, excerpt(body))
	case code >= 400:
		if f := p.ch.failure(body); f != "" {
			return nil, terminal(fmt.Errorf("vela/notification: %s answered %d: %s", where, code, f))
		}
		return nil, terminal(fmt.Errorf("vela/notification: %s answered %d: %s", where, code, excerpt(body)))
	case code >= 300:
		return nil, terminal(fmt.Errorf("vela/notification: %s answered %d: redirects are not followed for a post", where, code))
	}
	if f := p.ch.failure(body); f != "" {
		return nil, terminal(fmt.Errorf("vela/notification: %s refused the message: %s", where, f))
	}
	call.Report(step.Report{Summary: fmt.Sprintf("posted to %s → %s", where, resp.Status), Data: map[string]any{"status": resp.StatusCode, "body": excerpt(body)}})
	return &answer{StatusCode: resp.StatusCode, Body: string(body)}, nil
}

// Redact shows a URL as its scheme and host only: a webhook's secret is in its path or query.
func Redact(raw string) string {
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

// redactErr drops the URL Go's HTTP client puts in its errors.
func redactErr(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// excerpt is the start of an answer, on one line.
func excerpt(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		return "(empty answer)"
	}
	return s
}

func terminal(err error) error { return engine.Terminal(v1alpha1.ReasonExecute, err) }
