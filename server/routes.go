package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpMetrics count the API's requests by route and status, and time them by route.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepflow_http_requests_total",
			Help: "API requests answered, by route (method and pattern) and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stepflow_http_request_duration_seconds",
			Help:    "Time to answer an API request, by route; an event stream counts until it ends.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 300},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

func (m *httpMetrics) forRoute(rt route) (*prometheus.CounterVec, prometheus.Observer) {
	name := rt.method + " " + rt.path
	return m.requests.MustCurryWith(prometheus.Labels{"route": name}), m.duration.WithLabelValues(name)
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (flushing, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher for the event streams.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// route is one endpoint: what it needs and what it does. The OpenAPI document is made from
// the same table, so that it describes exactly what is served.
type route struct {
	method, path string
	// role is the smallest role that may call it; "" needs no token.
	role    Role
	summary string
	// query documents the query parameters.
	query []string
	// body says what the request carries: "" nothing, "json" a JSON object, "object" a
	// Kubernetes-shaped object in JSON or YAML.
	body   string
	handle func(w http.ResponseWriter, r *http.Request) error
}

func (s *Server) routeTable() []route {
	return []route{
		{method: "GET", path: "/api/v1/openapi.json", summary: "This API's OpenAPI document", handle: s.openAPI},
		{method: "POST", path: "/api/v1/login", summary: "Check a token and set the dashboard's cookies", body: "json", handle: s.login},
		{method: "POST", path: "/api/v1/logout", summary: "Clear the dashboard's cookies", handle: s.logout},
		{method: "GET", path: "/api/v1/whoami", role: RoleViewer, summary: "The caller's token name, role and namespaces", handle: s.whoami},

		{method: "POST", path: "/api/v1/runs", role: RoleOperator, summary: "Create a run, inline or from a template; ?wait answers when it settles", query: []string{"wait"}, body: "object", handle: s.createRunHandler},
		{method: "GET", path: "/api/v1/runs", role: RoleViewer, summary: "List runs, newest first", query: []string{"namespace", "phase", "template", "since", "until", "limit", "offset"}, handle: s.listRuns},
		{method: "GET", path: "/api/v1/runs/{namespace}/{name}", role: RoleViewer, summary: "A run (or, with ?iterations=STEP, a looping step's iterations)", query: []string{"iterations"}, handle: s.getRun},
		{method: "DELETE", path: "/api/v1/runs/{namespace}/{name}", role: RoleOperator, summary: "Delete a run, terminating it first", handle: s.deleteRun},
		{method: "POST", path: "/api/v1/runs/{namespace}/{name}/{operation}", role: RoleOperator, summary: "suspend, resume, terminate or restart a run ({\"step\"} for resume and restart)", body: "json", handle: s.operateRun},
		{method: "GET", path: "/api/v1/runs/{namespace}/{name}/logs", role: RoleViewer, summary: "A run's log", query: []string{"step"}, handle: s.runLogs},
		{method: "GET", path: "/api/v1/runs/{namespace}/{name}/events", role: RoleViewer, summary: "Server-sent events of a run's changes and log", handle: s.runEvents},

		{method: "GET", path: "/api/v1/templates", role: RoleViewer, summary: "List Workflow templates", query: []string{"namespace"}, handle: s.listTemplates},
		{method: "POST", path: "/api/v1/templates", role: RoleAdmin, summary: "Create a Workflow template", body: "object", handle: s.createTemplate},
		{method: "GET", path: "/api/v1/templates/{namespace}/{name}", role: RoleViewer, summary: "A Workflow template", handle: s.getTemplate},
		{method: "PUT", path: "/api/v1/templates/{namespace}/{name}", role: RoleAdmin, summary: "Create or update a Workflow template", body: "object", handle: s.putTemplate},
		{method: "DELETE", path: "/api/v1/templates/{namespace}/{name}", role: RoleAdmin, summary: "Delete a Workflow template and its triggers", handle: s.deleteTemplate},
		{method: "POST", path: "/api/v1/validate", role: RoleViewer, summary: "Check runs, templates and definitions without storing them", body: "object", handle: s.validate},

		{method: "GET", path: "/api/v1/definitions", role: RoleViewer, summary: "List step types, the built-ins too", query: []string{"namespace"}, handle: s.listDefinitions},
		{method: "POST", path: "/api/v1/definitions", role: RoleAdmin, summary: "Create a step type", body: "object", handle: s.createDefinition},
		{method: "GET", path: "/api/v1/definitions/{namespace}/{name}", role: RoleViewer, summary: "A step type and its parameters (namespace builtin for the built-ins)", handle: s.getDefinition},
		{method: "PUT", path: "/api/v1/definitions/{namespace}/{name}", role: RoleAdmin, summary: "Create or update a step type", body: "object", handle: s.putDefinition},
		{method: "DELETE", path: "/api/v1/definitions/{namespace}/{name}", role: RoleAdmin, summary: "Delete a step type", handle: s.deleteDefinition},

		{method: "GET", path: "/api/v1/templates/{namespace}/{name}/triggers", role: RoleViewer, summary: "A template's triggers", handle: s.listTriggers},
		{method: "POST", path: "/api/v1/templates/{namespace}/{name}/triggers", role: RoleAdmin, summary: "Add a webhook or cron trigger to a template", body: "json", handle: s.createTrigger},
		{method: "DELETE", path: "/api/v1/triggers/{id}", role: RoleAdmin, summary: "Delete a trigger", handle: s.deleteTrigger},
		{method: "POST", path: "/api/v1/hooks/{id}", summary: "A webhook trigger: starts a run (its token or signature is the authentication)", query: []string{"token"}, body: "json", handle: s.webhook},

		{method: "GET", path: "/api/v1/applications", role: RoleViewer, summary: "List Applications with their status", query: []string{"namespace"}, handle: s.listApplications},
		{method: "POST", path: "/api/v1/applications", role: RoleOperator, summary: "Store Applications (with the X-Definitions they use) and deliver each changed one as a new revision", body: "object", handle: s.upApplications},
		{method: "GET", path: "/api/v1/applications/{namespace}/{name}", role: RoleViewer, summary: "An Application with its status: phase, workflow, services' health, applied resources", handle: s.getApplication},
		{method: "DELETE", path: "/api/v1/applications/{namespace}/{name}", role: RoleOperator, summary: "Delete what an Application applied, in every cluster, then the Application", handle: s.deleteApplication},
		{method: "GET", path: "/api/v1/applications/{namespace}/{name}/revisions", role: RoleViewer, summary: "An Application's revisions, oldest first", handle: s.appRevisions},
		{method: "POST", path: "/api/v1/applications/{namespace}/{name}/rollback", role: RoleOperator, summary: "Deliver an earlier revision's spec again as a new revision ({\"revision\": N})", body: "json", handle: s.rollbackApplication},

		{method: "GET", path: "/api/v1/clusters", role: RoleViewer, summary: "The clusters stored for steps to name", handle: s.listClusters},
		{method: "POST", path: "/api/v1/clusters", role: RoleAdmin, summary: "Store a cluster: its name and kubeconfig", body: "json", handle: s.putCluster},
		{method: "DELETE", path: "/api/v1/clusters/{name}", role: RoleAdmin, summary: "Delete a stored cluster", handle: s.deleteCluster},

		{method: "GET", path: "/api/v1/tokens", role: RoleAdmin, summary: "List API tokens (never their secrets)", handle: s.listTokens},
		{method: "POST", path: "/api/v1/tokens", role: RoleAdmin, summary: "Create an API token; its secret is shown once", body: "json", handle: s.createTokenHandler},
		{method: "DELETE", path: "/api/v1/tokens/{id}", role: RoleAdmin, summary: "Delete an API token", handle: s.deleteToken},
	}
}

// buildMux registers the routes, /metrics, /healthz and the dashboard.
func (s *Server) buildMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.HandleFunc(rt.method+" "+rt.path, s.serve(rt))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(http.StatusNotFound, "no endpoint %s %s", r.Method, r.URL.Path))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	if s.opts.Web != nil {
		files := http.FileServerFS(s.opts.Web)
		// "/" rather than "GET /": the latter conflicts with the "/api/" fallback above.
		mux.Handle("/", securityHeaders(files))
	}
	return mux
}

// securityHeaders keeps the dashboard's pages from being framed or running scripts from
// elsewhere.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// serve wraps a route's handler: the body limit, authorization, panics and errors.
func (s *Server) serve(rt route) http.HandlerFunc {
	requests, duration := s.http.forRoute(rt)
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		w = sw
		defer func() {
			requests.WithLabelValues(strconv.Itoa(sw.status)).Inc()
			duration.Observe(time.Since(start).Seconds())
		}()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in a request", "method", r.Method, "path", r.URL.Path, "panic", p)
				s.writeError(w, r, errorf(http.StatusInternalServerError, "internal error; the server's log has the details"))
			}
		}()
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBody)
		if rt.role != "" {
			var ok bool
			if r, ok = s.authorize(w, r, rt.role); !ok {
				return
			}
		}
		if err := rt.handle(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

// readBody reads a request's body whole. A body that does not arrive within the server's read
// timeout answers 408.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, errorf(http.StatusRequestTimeout, "the body did not arrive in time")
	}
	if err != nil {
		return nil, fmt.Errorf("read the body: %w", err)
	}
	return b, nil
}

// decodeJSON decodes a JSON body into v, refusing unknown fields; an empty body leaves v.
func decodeJSON(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "the body: %v", err)
	}
	return nil
}

// isYAML reports whether the request says its body is YAML.
func isYAML(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return strings.Contains(mt, "yaml")
}

var pathParam = regexp.MustCompile(`\{([a-zA-Z]+)\}`)

// openAPI serves the OpenAPI 3.1 document of the route table.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, s.openAPIDocument())
	return nil
}

func (s *Server) openAPIDocument() map[string]any {
	paths := map[string]map[string]any{}
	for _, rt := range s.routes {
		op := map[string]any{"summary": rt.summary, "operationId": operationID(rt)}
		var params []map[string]any
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.query {
			params = append(params, map[string]any{"name": q, "in": "query", "schema": map[string]any{"type": "string"}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		switch rt.body {
		case "json":
			op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
		case "object":
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": map[string]any{"type": "object"}},
				"application/yaml": map[string]any{"schema": map[string]any{"type": "string"}},
			}}
		}
		responses := map[string]any{
			"200":     map[string]any{"description": "OK", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}},
			"default": map[string]any{"description": "An error", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}},
		}
		op["responses"] = responses
		if rt.role != "" {
			op["security"] = []map[string]any{{"bearer": []string{}}, {"cookie": []string{}}}
			op["x-stepflow-role"] = string(rt.role)
		} else {
			op["security"] = []map[string]any{}
		}
		if paths[rt.path] == nil {
			paths[rt.path] = map[string]any{}
		}
		paths[rt.path][strings.ToLower(rt.method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "stepflow",
			"version":     "v1",
			"description": "The REST API of stepflow server: runs of KubeVela-compatible workflows, their templates, step types and triggers. docs/api.md describes it for people.",
		},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer"},
				"cookie": map[string]any{"type": "apiKey", "in": "cookie", "name": cookieToken},
			},
			"schemas": map[string]any{
				"Error": map[string]any{"type": "object", "properties": map[string]any{"error": map[string]any{
					"type": "object", "properties": map[string]any{
						"status":  map[string]any{"type": "integer"},
						"message": map[string]any{"type": "string"},
						"problems": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
							"field": map[string]any{"type": "string"}, "line": map[string]any{"type": "integer"},
							"column": map[string]any{"type": "integer"}, "message": map[string]any{"type": "string"},
						}}},
					}}}},
			},
		},
	}
}

func operationID(rt route) string {
	p := pathParam.ReplaceAllString(strings.TrimPrefix(rt.path, "/api/v1/"), "by-$1")
	return strings.ToLower(rt.method) + "-" + strings.ReplaceAll(p, "/", "-")
}
