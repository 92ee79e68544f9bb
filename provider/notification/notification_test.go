package notification_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/email"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/provider/notification"
	"github.com/stepflow/stepflow/step"
)

// secret is the part of every webhook URL that must never be shown.
const secret = "T0SECRET/B0SECRET/XyZsEcReT"

// service is a local stand-in for a webhook: it checks each post against the body the service
// documents and answers as the service does.
type service struct {
	t      *testing.T
	want   map[string]any
	status int
	answer string
	got    chan map[string]any
}

func newService(t *testing.T, want map[string]any, status int, answer string) (*service, string) {
	s := &service{t: t, want: want, status: status, answer: answer, got: make(chan map[string]any, 4)}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL + "/services/" + secret + "?token=" + secret
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	b, _ := io.ReadAll(r.Body)
	switch {
	case r.Method != http.MethodPost:
		s.t.Errorf("%s %s, want POST", r.Method, r.URL.Path)
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		s.t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
	case json.Unmarshal(b, &body) != nil:
		s.t.Errorf("body is not a JSON object: %s", b)
	case s.want != nil && !reflect.DeepEqual(body, s.want):
		s.t.Errorf("body\n%s\nwant\n%s", b, mustJSON(s.want))
	}
	s.got <- body
	w.WriteHeader(s.status)
	if _, err := io.WriteString(w, s.answer); err != nil {
		s.t.Error(err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

type builtinDefs struct{}

func (builtinDefs) Template(_ context.Context, _, typ string) (string, error) {
	if t, ok := definitions.Template(typ); ok {
		return t, nil
	}
	return "", fmt.Errorf("%q: %w", typ, step.ErrUnknownType)
}

func runner() *step.Runner {
	reg := step.NewRegistry()
	builtin.Register(reg)
	kube.Register(reg, kube.Options{})
	email.Register(reg, email.Options{})
	notification.Register(reg, notification.Options{})
	return step.NewRunner(step.Options{Registry: reg, Definitions: builtinDefs{}})
}

// notify evaluates a notification step with properties.
func notify(t *testing.T, props map[string]any) (*engine.StepResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := json.Marshal(props)
	if err != nil {
		t.Fatal(err)
	}
	return runner().RunStep(ctx, &engine.StepRequest{
		Run:        engine.Key{Namespace: "default", Name: "run"},
		Step:       v1alpha1.WorkflowStepBase{Name: "notify", Type: "notification"},
		Properties: p,
		Context:    map[string]any{"name": "run", "namespace": "default", "stepName": "notify", "stepSessionID": "notify-1"},
		Now:        time.Now(),
	})
}

func TestEveryChannelPostsTheBodyItsServiceDocuments(t *testing.T) {
	slack, slackURL := newService(t, map[string]any{
		"text":   "Deployed shop v2",
		"blocks": []any{map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*shop* v2 is live"}}},
	}, 200, "ok")
	ding, dingURL := newService(t, map[string]any{
		"msgtype":  "markdown",
		"markdown": map[string]any{"title": "Deployed", "text": "#### shop v2 is live"},
		"at":       map[string]any{"atMobiles": []any{"13800000000"}, "isAtAll": false},
	}, 200, `{"errcode":0,"errmsg":"ok"}`)
	lark, larkURL := newService(t, map[string]any{
		"msg_type": "text",
		"content":  map[string]any{"text": "Deployed shop v2"},
	}, 200, `{"code":0,"msg":"success","data":{}}`)
	hook, hookURL := newService(t, map[string]any{"event": "deployed", "app": "shop", "version": float64(2)}, 202, "")

	res, err := notify(t, map[string]any{
		"slack": map[string]any{"url": map[string]any{"value": slackURL}, "message": map[string]any{
			"text":   "Deployed shop v2",
			"blocks": []any{map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*shop* v2 is live"}}},
		}},
		"dingding": map[string]any{"url": map[string]any{"value": dingURL}, "message": map[string]any{
			"msgtype":  "markdown",
			"markdown": map[string]any{"title": "Deployed", "text": "#### shop v2 is live"},
			"at":       map[string]any{"atMobiles": []any{"13800000000"}, "isAtAll": false},
		}},
		// KubeVela's form: content as a JSON string.
		"lark":    map[string]any{"url": map[string]any{"value": larkURL}, "message": map[string]any{"msg_type": "text", "content": `{"text":"Deployed shop v2"}`}},
		"webhook": map[string]any{"url": map[string]any{"value": hookURL}, "message": map[string]any{"event": "deployed", "app": "shop", "version": 2}},
	})
	if err != nil || res.Outcome != engine.Succeeded {
		t.Fatalf("got %v, %+v", err, res)
	}
	for name, s := range map[string]*service{"slack": slack, "dingding": ding, "lark": lark, "webhook": hook} {
		if len(s.got) != 1 {
			t.Errorf("%s received %d posts, want 1", name, len(s.got))
		}
	}
	// Each post's log line says where it went (the URL's secret part hidden) and the answer.
	var lines []string
	for _, l := range res.Logs {
		lines = append(lines, l.Message)
	}
	log := strings.Join(lines, "\n")
	for _, want := range []string{"slack: posted to Slack http://127.0.0.1:", "/<redacted> → 200 OK", "posted to webhook http://127.0.0.1:", "/<redacted> → 202 Accepted"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
}

// Each failure: terminal or not, the service's message, and never the URL's secret.
func TestFailuresCarryTheServicesMessageButNotTheURL(t *testing.T) {
	refused := "http://" + closedAddr(t) + "/services/" + secret
	for _, tc := range []struct {
		name, channel string
		status        int
		answer        string
		url           string
		terminal      bool
		wantInMessage string
	}{
		{name: "slack 400", channel: "slack", status: 400, answer: "invalid_payload", terminal: true, wantInMessage: "answered 400: invalid_payload"},
		{name: "slack 404", channel: "slack", status: 404, answer: "no_team", terminal: true, wantInMessage: "no_team"},
		{name: "dingtalk errcode", channel: "dingding", status: 200, answer: `{"errcode":310000,"errmsg":"keywords not in content"}`, terminal: true, wantInMessage: "errcode 310000: keywords not in content"},
		{name: "lark code", channel: "lark", status: 200, answer: `{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}`, terminal: true, wantInMessage: "code 19021: sign match fail"},
		{name: "lark 400", channel: "lark", status: 400, answer: `{"code":9499,"msg":"Bad Request"}`, terminal: true, wantInMessage: "code 9499: Bad Request"},
		{name: "webhook 500", channel: "webhook", status: 500, answer: "upstream down", terminal: false, wantInMessage: "answered 500: upstream down"},
		{name: "slack 429", channel: "slack", status: 429, answer: "rate_limited", terminal: false, wantInMessage: "rate_limited"},
		{name: "connection refused", channel: "webhook", url: refused, terminal: false, wantInMessage: "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				_, url = newService(t, nil, tc.status, tc.answer)
			}
			message := map[string]any{"text": "hi"}
			switch tc.channel {
			case "dingding":
				message = map[string]any{"text": map[string]any{"content": "hi"}}
			case "lark":
				message = map[string]any{"msg_type": "text", "content": map[string]any{"text": "hi"}}
			}
			res, err := notify(t, map[string]any{tc.channel: map[string]any{"url": map[string]any{"value": url}, "message": message}})
			var te *engine.TerminalError
			if err == nil || errors.As(err, &te) != tc.terminal {
				t.Fatalf("got %v (outcome %+v), want an error, terminal %t", err, res, tc.terminal)
			}
			if !strings.Contains(err.Error(), tc.wantInMessage) || !strings.Contains(err.Error(), "/<redacted>") {
				t.Errorf("error %q: want %q and the URL redacted", err, tc.wantInMessage)
			}
			shown := err.Error()
			for _, l := range res.Logs {
				shown += "\n" + l.Message + " " + l.Outcome + " " + string(l.Data)
			}
			if strings.Contains(shown, "SECRET") || strings.Contains(shown, "services/") {
				t.Errorf("the URL shows in the error or the log:\n%s", shown)
			}
		})
	}
}

func TestATimeoutIsRetried(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	r := step.NewRegistry()
	notification.Register(r, notification.Options{})
	a, _ := r.Action("notification", "webhook")
	_, err := a.Run(context.Background(), &step.Call{Params: map[string]any{
		"url": srv.URL + "/hook/" + secret, "message": map[string]any{"a": 1}, "timeout": "50ms",
	}})
	var te *engine.TerminalError
	if err == nil || errors.As(err, &te) || !strings.Contains(err.Error(), "no answer within 50ms") || strings.Contains(err.Error(), secret) {
		t.Fatalf("got %v, want a retryable timeout without the URL", err)
	}
}

func TestAPostIsASideEffect(t *testing.T) {
	r := step.NewRegistry()
	notification.Register(r, notification.Options{})
	for _, do := range []string{"slack", "dingtalk", "lark", "webhook"} {
		a, ok := r.Action("notification", do)
		if !ok || a.SideEffect == nil || !a.SideEffect(nil) {
			t.Errorf("notification.%s is not registered as a side effect", do)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T/B/X":              "https://hooks.slack.com/<redacted>",
		"https://oapi.dingtalk.com/robot/send?access_token=x": "https://oapi.dingtalk.com/<redacted>",
		"https://user:pw@example.com":                         "https://example.com",
		"https://example.com/":                                "https://example.com",
		"not a url":                                           "<redacted URL>",
	} {
		if got := notification.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func closedAddr(t *testing.T) string {
	l, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
