package server_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/server/servertest"
)

// Every route answers 401 without a token, 403 to a role too small, and lets the role it
// needs through (anything but 401 and 403).
func TestEveryRouteChecksTheRole(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	tokens := map[string]string{"viewer": srv.Token(t, "viewer"), "operator": srv.Token(t, "operator"), "admin": srv.Token(t, "admin")}
	doc := caller{t: t, base: srv.URL}.get("/api/v1/openapi.json").want(t, http.StatusOK).json(t)
	paths, _ := doc["paths"].(map[string]any)
	if len(paths) < 20 {
		t.Fatalf("the OpenAPI document has %d paths", len(paths))
	}
	rank := map[string]int{"": 0, "viewer": 1, "operator": 2, "admin": 3}
	// An admin of another namespace: every route naming namespace default denies it, and so
	// do the routes of the clusters and tokens of namespace default, which name no namespace.
	elsewhere := srv.Token(t, "admin", "elsewhere")
	root := caller{t: t, base: srv.URL, token: tokens["admin"]}
	root.postJSON("/api/v1/clusters", map[string]any{"name": "default-cluster", "kubeconfig": kubeconfig(""), "namespaces": []string{"default"}}).want(t, http.StatusOK)
	tokenID := at(root.postJSON("/api/v1/tokens", map[string]any{"name": "default-viewer", "role": "viewer", "namespaces": []string{"default"}}).want(t, http.StatusCreated).json(t), "id").(string)
	outside := map[string]string{
		"POST /api/v1/clusters":          `{"name": "default-cluster", "kubeconfig": ` + strconv.Quote(kubeconfig("")) + `}`,
		"DELETE /api/v1/clusters/{name}": ``,
		"POST /api/v1/tokens":            `{"name": "everywhere", "role": "admin"}`,
		"DELETE /api/v1/tokens/{id}":     ``,
	}
	checked, fenced := 0, 0
	for path, ops := range paths {
		for method, op := range ops.(map[string]any) {
			role, _ := at(op, "x-stepflow-role").(string)
			id := "x"
			if strings.HasPrefix(path, "/api/v1/tokens/") {
				id = tokenID
			}
			concrete := strings.NewReplacer("{namespace}", "default", "{name}", "default-cluster", "{operation}", "suspend", "{id}", id).Replace(path)
			m := strings.ToUpper(method)
			if role == "" {
				continue
			}
			checked++
			if r := (caller{t: t, base: srv.URL}).do(m, concrete, "application/json", []byte(`{}`)); r.status != http.StatusUnauthorized {
				t.Errorf("%s %s without a token: %d", m, concrete, r.status)
			}
			body, isOutside := outside[m+" "+path]
			if strings.Contains(path, "{namespace}") || isOutside {
				fenced++
				if body == "" {
					body = `{}`
				}
				r := (caller{t: t, base: srv.URL, token: elsewhere}).do(m, concrete, "application/json", []byte(body))
				if r.status != http.StatusForbidden && r.status != http.StatusNotFound {
					t.Errorf("%s %s as an admin of namespace elsewhere: %d, want 403 or 404: %s", m, concrete, r.status, r.body)
				}
			}
			if m == http.MethodGet && !strings.Contains(path, "{") {
				r := (caller{t: t, base: srv.URL, token: elsewhere}).get(concrete)
				if strings.Contains(string(r.body), "default-cluster") || strings.Contains(string(r.body), "default-viewer") {
					t.Errorf("GET %s as an admin of namespace elsewhere shows namespace default's cluster or token: %s", concrete, r.body)
				}
			}
			for name, tok := range tokens {
				r := (caller{t: t, base: srv.URL, token: tok}).do(m, concrete, "application/json", []byte(`{}`))
				switch {
				case rank[name] < rank[role] && r.status != http.StatusForbidden:
					t.Errorf("%s %s as %s (needs %s): %d, want 403", m, concrete, name, role, r.status)
				case rank[name] >= rank[role] && (r.status == http.StatusForbidden || r.status == http.StatusUnauthorized || r.status >= 500):
					t.Errorf("%s %s as %s: %d %s", m, concrete, name, r.status, r.body)
				}
			}
		}
	}
	for route := range outside {
		if _, ok := paths[strings.Fields(route)[1]]; !ok {
			t.Errorf("no route %s", route)
		}
	}
	if checked < 25 || fenced < 14 {
		t.Errorf("checked %d routes, %d of them in a namespace", checked, fenced)
	}
	caller{t: t, base: srv.URL, token: "sfp_not-a-token"}.get("/api/v1/runs").want(t, http.StatusUnauthorized)
}

func TestNamespacesAreKeptApart(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	admin := caller{t: t, base: srv.URL, token: srv.Token(t, "admin")}
	teamA := caller{t: t, base: srv.URL, token: srv.Token(t, "operator", "team-a")}
	for _, ns := range []string{"team-a", "team-b"} {
		admin.postYAML("/api/v1/runs?wait=30s", strings.Replace(approvalRun, "{name: gated}", "{name: gated, namespace: "+ns+"}", 1)).want(t, http.StatusOK)
	}
	list := teamA.get("/api/v1/runs").want(t, http.StatusOK).json(t)
	if at(list, "total") != 1.0 || at(list, "items.0.namespace") != "team-a" {
		t.Errorf("team-a lists %v", list)
	}
	if at(teamA.get("/api/v1/runs?namespace=team-b").json(t), "total") != 0.0 {
		t.Error("team-a lists team-b's runs")
	}
	teamA.get("/api/v1/runs/team-b/gated").want(t, http.StatusNotFound)
	teamA.get("/api/v1/runs/team-b/gated/logs").want(t, http.StatusNotFound)
	teamA.get("/api/v1/runs/team-b/gated/events").want(t, http.StatusNotFound)
	teamA.postJSON("/api/v1/runs/team-b/gated/terminate", nil).want(t, http.StatusNotFound)
	teamA.do("DELETE", "/api/v1/runs/team-b/gated", "", nil).want(t, http.StatusNotFound)
	teamA.postYAML("/api/v1/runs", strings.Replace(approvalRun, "{name: gated}", "{name: other, namespace: team-b}", 1)).want(t, http.StatusForbidden)
	teamA.get("/api/v1/runs/team-a/gated").want(t, http.StatusOK)
	if at(admin.get("/api/v1/runs/team-b/gated").json(t), "status.status") != "suspending" {
		t.Error("team-b's run was touched")
	}
}

func TestDashboardLoginAndCSRF(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	token := srv.Token(t, "operator")
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	post := func(path, body string, csrf bool) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/yaml")
		if csrf {
			u, _ := url.Parse(srv.URL)
			for _, c := range jar.Cookies(u) {
				if c.Name == "stepflow_csrf" {
					req.Header.Set("X-CSRF-Token", c.Value)
				}
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/api/v1/login", strings.NewReader(`{"token": "wrong"}`))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with a wrong token: %d", resp.StatusCode)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/api/v1/login", strings.NewReader(`{"token": "`+token+`"}`))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var httpOnly bool
	for _, c := range resp.Cookies() {
		if c.Name == "stepflow_token" {
			httpOnly = c.HttpOnly && c.SameSite == http.SameSiteStrictMode
		}
	}
	if resp.StatusCode != http.StatusOK || !httpOnly {
		t.Fatalf("login: %d, HttpOnly SameSite=Strict cookie: %v", resp.StatusCode, httpOnly)
	}
	if s := get(client, srv.URL+"/api/v1/whoami"); s != http.StatusOK {
		t.Errorf("whoami with the cookie: %d", s)
	}
	if s := post("/api/v1/runs", approvalRun, false); s != http.StatusForbidden {
		t.Errorf("a cookie POST without the CSRF header: %d, want 403", s)
	}
	if s := post("/api/v1/runs", approvalRun, true); s != http.StatusCreated {
		t.Errorf("a cookie POST with the CSRF header: %d, want 201", s)
	}
	if s := post("/api/v1/logout", "", true); s != http.StatusNoContent {
		t.Errorf("logout: %d", s)
	}
	if s := get(client, srv.URL+"/api/v1/whoami"); s != http.StatusUnauthorized {
		t.Errorf("whoami after logout: %d", s)
	}
}

func TestAnonymousReadAndLimits(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	anon := caller{t: t, base: srv.URL}
	anon.get("/api/v1/runs").want(t, http.StatusUnauthorized)

	open := servertest.Start(t, servertest.Options{Configure: func(o *server.Options) { o.AllowAnonymousRead = true; o.MaxBody = 4096 }})
	anon = caller{t: t, base: open.URL}
	anon.get("/api/v1/runs").want(t, http.StatusOK)
	anon.postYAML("/api/v1/runs", approvalRun).want(t, http.StatusUnauthorized)
	op := caller{t: t, base: open.URL, token: open.Token(t, "operator")}
	big := approvalRun + "#" + strings.Repeat("x", 5000) + "\n"
	op.postYAML("/api/v1/runs", big).want(t, http.StatusRequestEntityTooLarge)
	op.get("/api/v1/nothing-here").want(t, http.StatusNotFound)
}

// get answers the status of a GET with client.
func get(client *http.Client, url string) int {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A token of team-a validating objects of team-b is answered 403, the same whether team-b holds
// what they name or not: before, /validate told a template's existence and its parameters'
// names, and a step type's parameters, to any namespaced viewer.
func TestValidateKeepsOtherNamespacesHidden(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	admin := caller{t: t, base: srv.URL, token: srv.Token(t, "admin")}
	viewer := caller{t: t, base: srv.URL, token: srv.Token(t, "viewer", "team-a")}
	admin.postYAML("/api/v1/templates", `
apiVersion: core.oam.dev/v1alpha1
kind: Workflow
metadata: {name: payroll, namespace: team-b}
parameters:
- {name: bankAccount, type: string, required: true}
steps:
- {name: pay, type: print-message-in-status, properties: {message: paid}}
`).want(t, http.StatusCreated)
	admin.postYAML("/api/v1/definitions", `
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: wire-money, namespace: team-b}
spec: {schematic: {cue: {template: 'parameter: {swiftCode: string}'}}}
`).want(t, http.StatusCreated)

	run := func(ns, ref, typ string) string {
		steps := "spec: {workflowRef: " + ref + "}"
		if typ != "" {
			steps = "spec: {workflowSpec: {steps: [{name: s, type: " + typ + "}]}}"
		}
		return "apiVersion: core.oam.dev/v1alpha1\nkind: WorkflowRun\nmetadata: {name: probe, namespace: " + ns + "}\n" + steps + "\n"
	}
	var answers []string
	for _, doc := range []string{
		run("team-b", "payroll", ""), run("team-b", "no-such-template", ""),
		run("team-b", "", "wire-money"), run("team-b", "", "no-such-type"),
		"apiVersion: core.oam.dev/v1alpha1\nkind: Workflow\nmetadata: {name: probe, namespace: team-b}\nsteps: [{name: s, type: wire-money}]\n",
	} {
		r := viewer.postYAML("/api/v1/validate", doc).want(t, http.StatusForbidden)
		for _, secret := range []string{"bankAccount", "swiftCode", "payroll", "wire-money", "no Workflow", "step type"} {
			if strings.Contains(string(r.body), secret) {
				t.Errorf("the answer tells %q: %s", secret, r.body)
			}
		}
		answers = append(answers, string(r.body))
	}
	for _, a := range answers[1:] {
		if a != answers[0] {
			t.Errorf("answers differ, so they tell what team-b holds:\n%s\n%s", answers[0], a)
		}
	}
	// Its own namespace is validated as before.
	viewer.postYAML("/api/v1/validate", run("team-a", "", "no-such-type")).want(t, http.StatusBadRequest)
	viewer.postYAML("/api/v1/validate", run("team-a", "", "suspend")).want(t, http.StatusOK)
}
