package oam_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/oam"
	"github.com/stepflow/stepflow/step"
)

// session is a stand-in for a step evaluation's session: it keeps variables and how the
// evaluation ended.
type session struct {
	vars           map[string]json.RawMessage
	waited, failed string
	now            time.Time
}

func (s *session) Now() time.Time                          { return s.now }
func (s *session) Wait(m string)                           { s.waited = m }
func (s *session) Suspend(time.Duration, string) bool      { return true }
func (s *session) Fail(m string)                           { s.failed = m }
func (s *session) Break(string)                            {}
func (s *session) Message(string)                          {}
func (s *session) Log(int, string, any)                    {}
func (s *session) Report(step.Report)                      {}
func (s *session) Redact(v string) string                  { return v }
func (s *session) Sensitive(...string)                     {}
func (s *session) Var(name string) (json.RawMessage, bool) { v, ok := s.vars[name]; return v, ok }
func (s *session) SetVar(name string, v json.RawMessage)   { s.vars[name] = v }

func registry() *step.Registry {
	r := step.NewRegistry()
	oam.Register(r, oam.Options{Definitions: application.NewSet().Add(definitions.Components(), definitions.Traits(), definitions.Policies())})
	return r
}

func call(r *step.Registry, do string, params map[string]any, ctx map[string]any) (any, error) {
	a, _ := r.Action("oam", do)
	return a.Run(context.Background(), &step.Call{Params: params, Path: "x", Step: "s", Context: ctx, Session: &session{vars: map[string]json.RawMessage{}}})
}

func TestWhatTheRunCarriesIsChecked(t *testing.T) {
	r := registry()
	for _, tc := range []struct {
		name string
		ctx  map[string]any
		want string
	}{
		{"no application", map[string]any{"name": "wr"}, "this run delivers no Application"},
		{"not an Application", map[string]any{"application": "shop"}, "context.application is not an Application"},
		{"bad definitions", map[string]any{"application": map[string]any{"metadata": map[string]any{"name": "a"}}, "applicationDefinitions": []any{1}}, "context.applicationDefinitions"},
	} {
		_, err := call(r, "load", map[string]any{}, tc.ctx)
		var term *engine.TerminalError
		if err == nil || !errors.As(err, &term) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a terminal error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestLoadAndRender(t *testing.T) {
	r := registry()
	ctx := map[string]any{"application": map[string]any{
		"metadata": map[string]any{"name": "shop", "namespace": "prod"},
		"spec": map[string]any{"components": []any{
			map[string]any{"name": "web", "type": "webservice", "dependsOn": []any{"db"}, "properties": map[string]any{"image": "nginx"}},
			map[string]any{"name": "db", "type": "worker", "properties": map[string]any{"image": "postgres"}},
		}},
	}}
	out, err := call(r, "load-comps-in-order", map[string]any{}, ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	if !strings.HasPrefix(string(b), `{"value":[{"name":"db"`) {
		t.Errorf("in order: %s", b)
	}
	out, err = call(r, "component-render", map[string]any{"value": map[string]any{"name": "web", "type": "webservice", "properties": map[string]any{"image": "nginx:2"}}, "namespace": "edge"}, ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(out.(map[string]any)["output"])
	if !strings.Contains(string(b), `"namespace":"edge"`) || !strings.Contains(string(b), `"image":"nginx:2"`) {
		t.Errorf("rendered %s", b)
	}
	_, err = call(r, "component-render", map[string]any{"value": map[string]any{"name": "web", "type": "no-such-type"}}, ctx)
	if err == nil || !strings.Contains(err.Error(), "no-such-type") {
		t.Errorf("an unknown type: %v", err)
	}
	_, err = call(r, "load", map[string]any{"app": "other"}, ctx)
	if err == nil || !strings.Contains(err.Error(), "only the Application the run delivers") {
		t.Errorf("another app: %v", err)
	}
}
