package server

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepflow/stepflow/store/sqlite"
)

// FuzzRequests sends arbitrary bodies to the endpoints that read one, as an operator and as an
// admin would: no request may make the server answer 500 (a panic is answered 500).
func FuzzRequests(f *testing.F) {
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(f.TempDir(), "stepflow.db")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	srv, err := New(Options{Store: st})
	if err != nil {
		f.Fatal(err)
	}
	_, secret, err := CreateToken(context.Background(), st, "fuzz", RoleAdmin, nil, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	paths := []string{
		"POST /api/v1/runs", "POST /api/v1/validate", "POST /api/v1/templates", "PUT /api/v1/templates/default/t",
		"POST /api/v1/definitions", "POST /api/v1/templates/default/t/triggers", "POST /api/v1/clusters",
		"POST /api/v1/tokens", "POST /api/v1/login", "POST /api/v1/runs/default/r/restart", "POST /api/v1/hooks/x",
		"POST /api/v1/triggers/x/backfill",
	}
	seeds := []string{
		"apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: r}\nspec:\n  workflowSpec:\n    steps:\n    - {name: a, type: suspend}\n",
		`{"template": "t", "context": {"a": [1, {"b": null}]}}`,
		"apiVersion: core.oam.dev/v1alpha1\nkind: Workflow\nmetadata: {name: t}\nparameters: [{name: a, type: integer, default: 1.5}]\nsteps: [{name: s, type: suspend}]\n",
		"apiVersion: core.oam.dev/v1beta1\nkind: WorkflowStepDefinition\nmetadata: {name: d}\nspec: {schematic: {cue: {template: 'parameter: {}'}}}\n",
		`{"type": "cron", "schedule": "@every 0s"}`,
		`{"type": "cron", "schedules": ["@hourly", "0 0 31 2 *"], "timeZone": "Local", "startingDeadlineSeconds": -1, "concurrencyPolicy": "REPLACE"}`,
		`{"from": "2026-01-01T00:00:00Z", "to": "0001-01-01T00:00:00Z"}`,
		`{"name": "c", "kubeconfig": "apiVersion: v1"}`,
		`{"step": 7}`, "- [&a, *a]", "{{{{", "",
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		p := paths[int(route)%len(paths)]
		method, path, _ := bytes.Cut([]byte(p), []byte(" "))
		for _, ct := range []string{"application/json", "application/yaml"} {
			req := httptest.NewRequestWithContext(t.Context(), string(method), string(path), bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+secret)
			req.Header.Set("Content-Type", ct)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= http.StatusInternalServerError {
				t.Fatalf("%s %s (%s) answered %d: %s\nbody: %q", method, path, ct, rec.Code, rec.Body.String(), body)
			}
		}
	})
}
