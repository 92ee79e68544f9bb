package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/store"
)

// apiError is an error answered with its HTTP status; problems locate invalid input.
type apiError struct {
	status   int
	msg      string
	problems []problem
}

func (e *apiError) Error() string { return e.msg }

// problem is one thing wrong with a request's input.
type problem struct {
	Field   string `json:"field,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Message string `json:"message"`
}

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// invalid turns the problems of a check (a manifest.Errors, a field.ErrorList or any other
// error) into a 400, except a check that could not be made (catalog.ErrUnchecked): a 503.
func invalid(err error) *apiError {
	if errors.Is(err, catalog.ErrUnchecked) {
		// The server could not check (its CUE evaluators failed, a store did not answer):
		// the input is not at fault, and the same request may succeed again.
		return &apiError{status: http.StatusServiceUnavailable, msg: err.Error() + "; try again"}
	}
	if merrs, ok := errors.AsType[manifest.Errors](err); ok {
		e := &apiError{status: http.StatusBadRequest, msg: "invalid: " + err.Error()}
		for _, m := range merrs {
			e.problems = append(e.problems, problem{Field: m.Path, Line: m.Line, Column: m.Column, Message: m.Msg})
		}
		return e
	}
	return &apiError{status: http.StatusBadRequest, msg: err.Error()}
}

// invalidFields answers the problems of a field.ErrorList with 400.
func invalidFields(errs field.ErrorList) *apiError {
	e := &apiError{status: http.StatusBadRequest, msg: "invalid: " + errs.ToAggregate().Error()}
	for _, fe := range errs {
		e.problems = append(e.problems, problem{Field: fe.Field, Message: fe.ErrorBody()})
	}
	return e
}

// writeError answers err: an apiError with its status, a store's not-found with 404, an
// exists or conflict with 409, anything else with 500 (logged, not shown).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, engine.ErrNotFound):
		ae = errorf(http.StatusNotFound, "%v", err)
	case errors.Is(err, store.ErrExists), errors.Is(err, engine.ErrConflict):
		ae = errorf(http.StatusConflict, "%v", err)
	case errors.Is(err, engine.ErrInvalidOperation):
		ae = errorf(http.StatusConflict, "%v", err)
	default:
		if tooBig, ok := errors.AsType[*http.MaxBytesError](err); ok {
			ae = errorf(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes", tooBig.Limit)
			break
		}
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = errorf(http.StatusInternalServerError, "internal error; the server's log has the details")
	}
	body := struct {
		Error struct {
			Status   int       `json:"status"`
			Message  string    `json:"message"`
			Problems []problem `json:"problems,omitempty"`
		} `json:"error"`
	}{}
	body.Error.Status, body.Error.Message, body.Error.Problems = ae.status, ae.msg, ae.problems
	writeJSON(w, ae.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}
