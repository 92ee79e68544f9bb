package server

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/step"
)

// A check the server could not make (its CUE evaluators failed) is answered 503, the
// server's failure that a retry may not meet, never 400, which tells the client its valid
// run is wrong; the problems of a check stay 400.
func TestUncheckedIsNotBadRequest(t *testing.T) {
	failed := fmt.Errorf("%w: spec.workflowSpec.steps[1].properties: step deploy: %w: those holding the evaluation ended 4 times for others",
		catalog.ErrUnchecked, step.ErrUnavailable)
	if e := invalid(failed); e.status != http.StatusServiceUnavailable {
		t.Errorf("a check not made: %d %s", e.status, e.msg)
	}
	if e := invalid(manifest.Errors{{Path: "spec", Msg: "wrong"}}); e.status != http.StatusBadRequest {
		t.Errorf("a problem of the input: %d %s", e.status, e.msg)
	}
}
