package server_test

import (
	"net/http"
	"testing"

	"github.com/stepflow/stepflow/server/servertest"
)

// The designer's palette for Applications: the built-in component, trait and policy types,
// each with the parameters its form is made from.
func TestXDefinitionsListsTypesWithTheirParameters(t *testing.T) {
	srv, op, _ := start(t, servertest.Options{})
	viewer := caller{t: t, base: srv.URL, token: srv.Token(t, "viewer")}
	op.get("/api/v1/xdefinitions").want(t, http.StatusOK)
	items := at(viewer.get("/api/v1/xdefinitions").want(t, http.StatusOK).json(t), "items").([]any)
	byName := map[string]map[string]any{}
	for _, it := range items {
		m := it.(map[string]any)
		byName[m["kind"].(string)+"/"+m["name"].(string)] = m
	}
	for _, want := range []string{"component/webservice", "component/worker", "trait/scaler", "trait/env", "policy/topology", "policy/override"} {
		if byName[want] == nil {
			t.Errorf("%s is not listed", want)
		}
	}
	param := func(key, name string) map[string]any {
		for _, p := range byName[key]["parameters"].([]any) {
			if p.(map[string]any)["name"] == name {
				return p.(map[string]any)
			}
		}
		return nil
	}
	if p := param("component/webservice", "image"); p == nil || p["type"] != "string" || p["required"] != true {
		t.Errorf("webservice's image parameter: %v, want a required string", p)
	}
	if p := param("trait/scaler", "replicas"); p == nil || p["type"] != "*1 | int" || p["default"] != "1" {
		t.Errorf("scaler's replicas parameter: %v, want an int defaulting to 1", p)
	}
	if d, _ := byName["component/webservice"]["description"].(string); d == "" {
		t.Error("webservice has no description")
	}
}
