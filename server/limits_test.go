package server_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/server/servertest"
)

// A viewer's 27 KB request with a matrix of seven lists of 1,000 items (10^21 combinations)
// is refused from the lists' lengths, at once, with the limit and its flag; so are a run and
// a template carrying it. Before, the server built the product and died out of memory.
func TestAHugeMatrixIsRefusedFromItsListSizes(t *testing.T) {
	srv, op, admin := start(t, servertest.Options{})
	viewer := caller{t: t, base: srv.URL, token: srv.Token(t, "viewer")}
	lists := make([]string, 7)
	for i := range lists {
		items := make([]string, 1000)
		for j := range items {
			items[j] = strconv.Itoa(j)
		}
		lists[i] = fmt.Sprintf(`"l%d": [%s]`, i, strings.Join(items, ","))
	}
	matrix := "{" + strings.Join(lists, ",") + "}"
	steps := `{"steps": [{"name": "each", "type": "print-message-in-status", "properties": {"message": "x"}, "matrix": ` + matrix + `}]}`
	run := `{"apiVersion": "core.oam.dev/v1alpha1", "kind": "WorkflowRun", "metadata": {"name": "huge"}, "spec": {"workflowSpec": ` + steps + `}}`
	template := `{"apiVersion": "core.oam.dev/v1alpha1", "kind": "Workflow", "metadata": {"name": "huge"}, ` + steps[1:]
	if len(run) > 40<<10 {
		t.Fatalf("the request is %d bytes", len(run))
	}
	for _, c := range []struct {
		who        caller
		path, body string
		field      string
	}{
		{viewer, "/api/v1/validate", run, "spec.workflowSpec.steps[0].matrix"},
		{op, "/api/v1/runs", run, "spec.workflowSpec.steps[0].matrix"},
		{admin, "/api/v1/templates", template, "steps[0].matrix"},
	} {
		begin := time.Now()
		r := c.who.do("POST", c.path, "application/json", []byte(c.body)).want(t, http.StatusBadRequest)
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("%s took %s", c.path, d)
		}
		msg := r.problems(t)[c.field]
		if !strings.Contains(msg, "more than the limit of 10000 iterations per loop") || !strings.Contains(msg, "--max-iterations") {
			t.Errorf("%s: problem at %s %q; answer %s", c.path, c.field, msg, r.body)
		}
	}
	if n := at(op.get("/api/v1/runs").json(t), "total"); n != 0.0 {
		t.Errorf("%v runs stored", n)
	}
}
