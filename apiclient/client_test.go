package apiclient_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/oapi-codegen/oapi-codegen/v2/pkg/codegen"
	"github.com/oapi-codegen/oapi-codegen/v2/pkg/util"
	"go.yaml.in/yaml/v3"

	"github.com/stepflow/stepflow/apiclient"
	"github.com/stepflow/stepflow/server/servertest"
)

// TestClientIsGenerated generates the client from docs/openapi.json as `go generate` does and
// checks that the committed one is what comes out.
func TestClientIsGenerated(t *testing.T) {
	raw, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg codegen.Configuration
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	spec, err := util.LoadSwagger("../docs/openapi.json")
	if err != nil {
		t.Fatalf("load the document as oapi-codegen does: %v", err)
	}
	code, err := codegen.Generate(spec, cfg.UpdateDefaults())
	if err != nil {
		t.Fatalf("generate the client: %v", err)
	}
	committed, err := os.ReadFile("client.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	// The header names the generator's module and version, which in a test binary are this
	// module's: the rest must be the same.
	if withoutHeader(code) != withoutHeader(string(committed)) {
		t.Errorf("client.gen.go is not what oapi-codegen makes of docs/openapi.json: run `go generate ./apiclient`")
	}
}

func withoutHeader(code string) string {
	_, rest, _ := strings.Cut(code, "DO NOT EDIT.")
	return rest
}

// TestClientAgainstServer drives a real server with the generated client: a template, a run
// of it waited for, the lists, the log, a token, and an error answered in the documented shape.
func TestClientAgainstServer(t *testing.T) {
	ctx := context.Background()
	s := servertest.Start(t, servertest.Options{})
	admin := s.Token(t, "admin")
	c, err := apiclient.NewClientWithResponses(s.URL, apiclient.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+admin)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}

	name, ns := "greet", "default"
	var props apiclient.RawExtension = map[string]any{"message": "hello from a generated client"}
	tmpl := apiclient.Workflow{
		ApiVersion: new("core.oam.dev/v1alpha1"), Kind: new("Workflow"),
		Metadata: &apiclient.ObjectMeta{Name: &name, Namespace: &ns},
		Steps: &[]apiclient.WorkflowStep{{
			Name: new("hello"), Type: new("print-message-in-status"),
			Properties: &props,
		}},
	}
	created, err := c.PostTemplatesWithResponse(ctx, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if created.StatusCode() != http.StatusCreated || created.JSON201 == nil || *created.JSON201.Metadata.Name != name {
		t.Fatalf("create the template: %d %s", created.StatusCode(), created.Body)
	}

	var body apiclient.RunRequest
	if err := body.FromTemplateRun(apiclient.TemplateRun{Template: &name, Namespace: &ns, Name: new("greet-1")}); err != nil {
		t.Fatal(err)
	}
	run, err := c.PostRunsWithResponse(ctx, &apiclient.PostRunsParams{Wait: new("30s")}, body)
	if err != nil {
		t.Fatal(err)
	}
	if run.StatusCode() != http.StatusOK || run.JSON200 == nil {
		t.Fatalf("create the run and wait: %d %s", run.StatusCode(), run.Body)
	}
	if got := *run.JSON200.Status.Status; got != "succeeded" {
		t.Errorf("the run is %q, want succeeded: %s", got, run.Body)
	}
	if steps := *run.JSON200.Status.Steps; len(steps) != 1 || *steps[0].Message != "hello from a generated client" {
		t.Errorf("the step's message: %s", run.Body)
	}

	list, err := c.GetRunsWithResponse(ctx, &apiclient.GetRunsParams{Namespace: &ns})
	if err != nil {
		t.Fatal(err)
	}
	if list.JSON200 == nil || len(*list.JSON200.Items) != 1 || *list.JSON200.Total != 1 || *(*list.JSON200.Items)[0].Name != "greet-1" {
		t.Errorf("list the runs: %d %s", list.StatusCode(), list.Body)
	}
	logs, err := c.GetRunsByNamespaceByNameLogsWithResponse(ctx, ns, "greet-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if logs.JSON200 == nil {
		t.Errorf("the run's log: %d %s", logs.StatusCode(), logs.Body)
	}

	tok, err := c.PostTokensWithResponse(ctx, apiclient.TokenRequest{Name: new("ci"), Role: new("viewer")})
	if err != nil {
		t.Fatal(err)
	}
	if tok.JSON201 == nil || *tok.JSON201.Token == "" || *tok.JSON201.Role != "viewer" {
		t.Errorf("create a token: %d %s", tok.StatusCode(), tok.Body)
	}

	missing, err := c.GetRunsByNamespaceByNameWithResponse(ctx, ns, "nope", nil)
	if err != nil {
		t.Fatal(err)
	}
	if missing.StatusCode() != http.StatusNotFound || missing.JSON404 == nil || *missing.JSON404.Error.Status != http.StatusNotFound {
		t.Errorf("a missing run: %d %s", missing.StatusCode(), missing.Body)
	}
}
