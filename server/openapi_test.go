package server_test

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/stepflow/stepflow/server/servertest"
)

var updateOpenAPI = flag.Bool("update", false, "rewrite docs/openapi.json with the document the server serves")

// committedOpenAPI is the document as committed for client generators (apiclient is generated
// from it).
const committedOpenAPI = "../docs/openapi.json"

// TestOpenAPIDocument loads the served document as a client generator would and checks that
// it types what the API takes and answers, and that the committed copy is the served one.
func TestOpenAPIDocument(t *testing.T) {
	s := servertest.Start(t, servertest.Options{})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/api/v1/openapi.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	served, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(served)
	if err != nil {
		t.Fatalf("load the served document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the served document is not valid OpenAPI: %v", err)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.RequestBody != nil {
				if mt := op.RequestBody.Value.Content.Get("application/json"); mt == nil || untyped(mt.Schema) {
					t.Errorf("%s: the request body is not typed", where)
				}
			}
			ok := false
			for status, r := range op.Responses.Map() {
				code, err := strconv.Atoi(status)
				if err != nil {
					t.Errorf("%s: response %q: want every status listed, not a default", where, status)
					continue
				}
				ok = ok || code < 300
				for ct, mt := range r.Value.Content {
					if ct == "application/json" && untyped(mt.Schema) && path != "/api/v1/openapi.json" {
						t.Errorf("%s: the %d answer is not typed", where, code)
					}
				}
			}
			if !ok {
				t.Errorf("%s: no successful answer listed", where)
			}
			if op.Responses.Status(http.StatusInternalServerError) == nil {
				t.Errorf("%s: 500 is not listed", where)
			}
		}
	}
	create := doc.Paths.Find("/api/v1/runs").Post
	for _, status := range []int{200, 201, 202, 400, 401, 403, 404, 409, 413} {
		if create.Responses.Status(status) == nil {
			t.Errorf("POST /api/v1/runs: status %d is not listed", status)
		}
	}

	var pretty map[string]any
	if err := json.Unmarshal(served, &pretty); err != nil {
		t.Fatal(err)
	}
	want, err := json.MarshalIndent(pretty, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *updateOpenAPI {
		if err := os.WriteFile(committedOpenAPI, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(committedOpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s is not the document the server serves: run `go test ./server -run TestOpenAPIDocument -update`, then `go generate ./apiclient`", committedOpenAPI)
	}
}

// untyped reports a schema that says no more than "an object".
func untyped(s *openapi3.SchemaRef) bool {
	if s == nil {
		return true
	}
	if s.Ref != "" || len(s.Value.AnyOf) > 0 || len(s.Value.OneOf) > 0 {
		return false
	}
	v := s.Value
	return len(v.Properties) == 0 && v.Items == nil && v.AdditionalProperties.Schema == nil && !v.Type.Is("string")
}
