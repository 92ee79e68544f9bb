package servertest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// maxChecked is the largest answer body checked against the document; larger ones are
// checked by status only.
const maxChecked = 4 << 20

// answerChecker wraps a server's handler so that every answer of a route the OpenAPI
// document describes is checked against it: its status is one the operation lists, and its
// JSON body fits the schema. A mismatch fails the test that made the request, so every test
// that uses a Server keeps the document true.
type answerChecker struct {
	t      testing.TB
	next   http.Handler
	router routers.Router
	mu     sync.Mutex
	ended  bool
}

func newAnswerChecker(t testing.TB, doc *openapi3.T, next http.Handler) (*answerChecker, error) {
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &answerChecker{t: t, next: next, router: router}, nil
}

// end stops the checks: the test has ended, and may no longer be failed.
func (c *answerChecker) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
}

func (c *answerChecker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		c.next.ServeHTTP(w, r)
		return
	}
	// The route is found on a copy: the handler reads the original's body.
	probe := r.Clone(context.WithoutCancel(r.Context()))
	probe.Body = http.NoBody
	route, params, err := c.router.FindRoute(probe)
	if err != nil {
		c.next.ServeHTTP(w, r)
		return
	}
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	c.next.ServeHTTP(rec, r)
	in := &openapi3filter.RequestValidationInput{Request: probe, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: rec.status, Header: rec.Header(),
		Body:    io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: rec.over || strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream")},
	}
	if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.ended {
			c.t.Errorf("the answer to %s %s does not fit the OpenAPI document: %v\nbody: %.2000s", r.Method, r.URL.Path, err, rec.body.String())
		}
	}
}

// recorder passes an answer on and keeps its status and the start of its body.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
	over   bool
	wrote  bool
}

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	if !r.over && r.body.Len()+len(b) <= maxChecked {
		r.body.Write(b)
	} else {
		r.over = true
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush passes on a flush, for the event streams.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
