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

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
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
	body string
	// in is a value of the body's type (anyOf for one of several), for the OpenAPI document.
	in any
	// ok are the answers other than errors, by status.
	ok answers
	// fails are the error statuses it answers beyond those of every route like it
	// (route.errorStatuses).
	fails  []int
	handle func(w http.ResponseWriter, r *http.Request) error
}

func (s *Server) routeTable() []route {
	var (
		run       = &runView{}
		workflow  = &v1alpha1.Workflow{}
		stepType  = &v1beta1.WorkflowStepDefinition{}
		conflict  = []int{http.StatusConflict}
		noContent = answers{http.StatusNoContent: nil}
	)
	return []route{
		{method: "GET", path: "/api/v1/openapi.json", summary: "This API's OpenAPI document", ok: answers{200: anyObject{}}, handle: s.openAPI},
		{method: "POST", path: "/api/v1/login", summary: "Check a token and set the dashboard's cookies", body: "json", in: loginRequest{}, ok: answers{200: identity{}}, fails: []int{http.StatusUnauthorized}, handle: s.login},
		{method: "POST", path: "/api/v1/logout", summary: "Clear the dashboard's cookies", ok: noContent, handle: s.logout},
		{method: "GET", path: "/api/v1/whoami", role: RoleViewer, summary: "The caller's token name, role and namespaces", ok: answers{200: identity{}}, handle: s.whoami},

		{method: "POST", path: "/api/v1/runs", role: RoleOperator, summary: "Create a run, inline or from a template; ?wait answers when it settles (200), or with the run as it is when the wait ends (202)", query: []string{"wait"}, body: "object",
			in: anyOf{"RunRequest", []any{&v1alpha1.WorkflowRun{}, templateRun{}}}, ok: answers{201: run, 200: run, 202: run}, fails: []int{http.StatusNotFound, http.StatusConflict}, handle: s.createRunHandler},
		{method: "GET", path: "/api/v1/runs", role: RoleViewer, summary: "List runs, newest first", query: []string{"namespace", "phase", "template", "since", "until", "limit", "offset"}, ok: answers{200: listOf[summaryView]{}}, handle: s.listRuns},
		{method: "GET", path: "/api/v1/runs/{namespace}/{name}", role: RoleViewer, summary: "A run (or, with ?iterations=STEP, a looping step's iterations)", query: []string{"iterations"}, ok: answers{200: anyOf{"RunOrIterations", []any{run, listOf[*engine.Iteration]{}}}}, handle: s.getRun},
		{method: "DELETE", path: "/api/v1/runs/{namespace}/{name}", role: RoleOperator, summary: "Delete a run, terminating it first", ok: noContent, fails: conflict, handle: s.deleteRun},
		{method: "POST", path: "/api/v1/runs/{namespace}/{name}/{operation}", role: RoleOperator, summary: "suspend, resume, terminate or restart a run ({\"step\"} for resume and restart)", body: "json", in: operationRequest{}, ok: answers{200: run}, fails: conflict, handle: s.operateRun},
		{method: "GET", path: "/api/v1/runs/{namespace}/{name}/logs", role: RoleViewer, summary: "A run's log", query: []string{"step"}, ok: answers{200: listOf[engine.LogEntry]{}}, handle: s.runLogs},
		{method: "GET", path: "/api/v1/runs/{namespace}/{name}/events", role: RoleViewer, summary: "Server-sent events of a run's changes and log", ok: answers{200: eventStream{}}, handle: s.runEvents},

		{method: "GET", path: "/api/v1/templates", role: RoleViewer, summary: "List Workflow templates", query: []string{"namespace"}, ok: answers{200: listOf[*v1alpha1.Workflow]{}}, handle: s.listTemplates},
		{method: "POST", path: "/api/v1/templates", role: RoleAdmin, summary: "Create a Workflow template", body: "object", in: workflow, ok: answers{201: workflow}, fails: conflict, handle: s.createTemplate},
		{method: "GET", path: "/api/v1/templates/{namespace}/{name}", role: RoleViewer, summary: "A Workflow template", ok: answers{200: workflow}, handle: s.getTemplate},
		{method: "PUT", path: "/api/v1/templates/{namespace}/{name}", role: RoleAdmin, summary: "Create or update a Workflow template", body: "object", in: workflow, ok: answers{200: workflow}, fails: conflict, handle: s.putTemplate},
		{method: "DELETE", path: "/api/v1/templates/{namespace}/{name}", role: RoleAdmin, summary: "Delete a Workflow template with its revisions and triggers", ok: noContent, handle: s.deleteTemplate},
		{method: "GET", path: "/api/v1/templates/{namespace}/{name}/revisions", role: RoleViewer, summary: "A Workflow template's kept revisions, newest first", ok: answers{200: listOf[templateRevision]{}}, handle: s.templateRevisions},
		{method: "GET", path: "/api/v1/templates/{namespace}/{name}/revisions/{revision}", role: RoleViewer, summary: "One revision of a Workflow template, with its content", ok: answers{200: templateRevision{}}, fails: []int{http.StatusBadRequest}, handle: s.templateRevision},
		{method: "GET", path: "/api/v1/templates/{namespace}/{name}/diff", role: RoleViewer, summary: "The unified diff of the YAML of two revisions of a Workflow template (?from=N, ?to=M: the current one by default)", query: []string{"from", "to"}, ok: answers{200: revisionDiff{}}, fails: []int{http.StatusBadRequest}, handle: s.templateDiff},
		{method: "POST", path: "/api/v1/templates/{namespace}/{name}/rollback", role: RoleAdmin, summary: "Store an earlier revision's content as the template's newest revision ({\"revision\": N})", body: "json", in: rollbackRequest{}, ok: answers{200: workflow}, handle: s.rollbackTemplate},
		{method: "POST", path: "/api/v1/validate", role: RoleViewer, summary: "Check runs, templates and definitions without storing them", body: "object", in: anyOf{"ValidateRequest", []any{&v1alpha1.WorkflowRun{}, workflow, stepType, &v1beta1.Application{}}}, ok: answers{200: validateAnswer{}}, handle: s.validate},

		{method: "GET", path: "/api/v1/definitions", role: RoleViewer, summary: "List step types, the built-ins too", query: []string{"namespace"}, ok: answers{200: listOf[definitionSummary]{}}, handle: s.listDefinitions},
		{method: "POST", path: "/api/v1/definitions", role: RoleAdmin, summary: "Create a step type", body: "object", in: stepType, ok: answers{201: stepType}, fails: conflict, handle: s.createDefinition},
		{method: "GET", path: "/api/v1/definitions/{namespace}/{name}", role: RoleViewer, summary: "A step type and its parameters (namespace builtin for the built-ins)", ok: answers{200: definitionAnswer{}}, handle: s.getDefinition},
		{method: "PUT", path: "/api/v1/definitions/{namespace}/{name}", role: RoleAdmin, summary: "Create or update a step type", body: "object", in: stepType, ok: answers{200: stepType}, fails: conflict, handle: s.putDefinition},
		{method: "DELETE", path: "/api/v1/definitions/{namespace}/{name}", role: RoleAdmin, summary: "Delete a step type", ok: noContent, handle: s.deleteDefinition},
		{method: "GET", path: "/api/v1/xdefinitions", role: RoleViewer, summary: "List the built-in component, trait and policy types (X-Definitions) with their parameters", ok: answers{200: listOf[xdefinitionSummary]{}}, handle: s.listXDefinitions},

		{method: "GET", path: "/api/v1/packages", role: RoleViewer, summary: "List Packages (cue.oam.dev/v1alpha1): CUE packages definitions import, with their external providers", query: []string{"namespace"}, ok: answers{200: listOf[packageSummary]{}}, handle: s.listPackages},
		{method: "GET", path: "/api/v1/packages/{namespace}/{name}", role: RoleViewer, summary: "A Package", ok: answers{200: &cuev1alpha1.Package{}}, handle: s.getPackage},
		{method: "PUT", path: "/api/v1/packages/{namespace}/{name}", role: RoleAdmin, summary: "Create or update a Package", body: "object", in: &cuev1alpha1.Package{}, ok: answers{200: &cuev1alpha1.Package{}}, handle: s.putPackage},
		{method: "DELETE", path: "/api/v1/packages/{namespace}/{name}", role: RoleAdmin, summary: "Delete a Package", ok: noContent, handle: s.deletePackage},

		{method: "GET", path: "/api/v1/templates/{namespace}/{name}/triggers", role: RoleViewer, summary: "A template's triggers", ok: answers{200: listOf[trigger]{}}, handle: s.listTriggers},
		{method: "POST", path: "/api/v1/templates/{namespace}/{name}/triggers", role: RoleAdmin, summary: "Add a webhook or cron trigger to a template", body: "json", in: triggerRequest{}, ok: answers{201: triggerCreated{}}, handle: s.createTrigger},
		{method: "PUT", path: "/api/v1/triggers/{id}", role: RoleAdmin, summary: "Change a trigger's schedules, time zone, policies or context, keeping its id, secret and last firing", body: "json", in: triggerRequest{}, ok: answers{200: trigger{}}, fails: []int{http.StatusConflict}, handle: s.updateTrigger},
		{method: "DELETE", path: "/api/v1/triggers/{id}", role: RoleAdmin, summary: "Delete a trigger", ok: noContent, handle: s.deleteTrigger},
		{method: "POST", path: "/api/v1/triggers/{id}/pause", role: RoleOperator, summary: "Pause a cron trigger: it fires no more until unpaused", ok: answers{200: trigger{}}, fails: []int{http.StatusBadRequest, http.StatusConflict}, handle: s.pauseTrigger},
		{method: "POST", path: "/api/v1/triggers/{id}/unpause", role: RoleOperator, summary: "Unpause a cron trigger: its latest missed firing starts, within its startingDeadlineSeconds", ok: answers{200: trigger{}}, fails: []int{http.StatusBadRequest, http.StatusConflict}, handle: s.unpauseTrigger},
		{method: "POST", path: "/api/v1/triggers/{id}/backfill", role: RoleOperator, summary: "Start a cron trigger's runs of the firings in [from, to], those without a run yet", body: "json", in: backfillRequest{}, ok: answers{200: backfillAnswer{}}, fails: []int{http.StatusServiceUnavailable}, handle: s.backfillTrigger},
		{method: "POST", path: "/api/v1/hooks/{id}", summary: "A webhook or cloudevents trigger: starts a run (its token or signature is the authentication; a cloudevents trigger takes a CloudEvent in structured or binary mode)", query: []string{"token"}, body: "json", in: map[string]any{},
			ok: answers{202: runRef{}, 200: eventIgnored{}}, fails: []int{http.StatusUnauthorized, http.StatusConflict}, handle: s.webhook},

		{method: "GET", path: "/api/v1/applications", role: RoleViewer, summary: "List Applications with their status", query: []string{"namespace"}, ok: answers{200: listOf[*v1beta1.Application]{}}, handle: s.listApplications},
		{method: "POST", path: "/api/v1/applications", role: RoleOperator, summary: "Store Applications (with the X-Definitions they use) and deliver each changed one as a new revision", body: "object",
			in: anyOf{"ApplicationRequest", []any{&v1beta1.Application{}, &v1beta1.ComponentDefinition{}, &v1beta1.TraitDefinition{}, &v1beta1.PolicyDefinition{}}}, ok: answers{200: listOf[AppUp]{}}, handle: s.upApplications},
		{method: "GET", path: "/api/v1/applications/{namespace}/{name}", role: RoleViewer, summary: "An Application with its status: phase, workflow, services' health, applied resources", ok: answers{200: &v1beta1.Application{}}, handle: s.getApplication},
		{method: "DELETE", path: "/api/v1/applications/{namespace}/{name}", role: RoleOperator, summary: "Delete what an Application applied, in every cluster, then the Application", ok: noContent, handle: s.deleteApplication},
		{method: "GET", path: "/api/v1/applications/{namespace}/{name}/revisions", role: RoleViewer, summary: "An Application's revisions, oldest first", ok: answers{200: listOf[AppRevision]{}}, handle: s.appRevisions},
		{method: "POST", path: "/api/v1/applications/{namespace}/{name}/rollback", role: RoleOperator, summary: "Deliver an earlier revision's spec again as a new revision ({\"revision\": N})", body: "json", in: rollbackRequest{}, ok: answers{200: AppUp{}}, handle: s.rollbackApplication},

		{method: "GET", path: "/api/v1/clusters", role: RoleViewer, summary: "The clusters stored for steps to name", ok: answers{200: listOf[clusterView]{}}, handle: s.listClusters},
		{method: "POST", path: "/api/v1/clusters", role: RoleAdmin, summary: "Store a cluster: its name and kubeconfig", body: "json", in: clusterRequest{}, ok: answers{200: clusterView{}}, fails: conflict, handle: s.putCluster},
		{method: "DELETE", path: "/api/v1/clusters/{name}", role: RoleAdmin, summary: "Delete a stored cluster", ok: noContent, handle: s.deleteCluster},

		{method: "GET", path: "/api/v1/cache", role: RoleViewer, summary: "The step cache's entries, newest first", query: []string{"namespace"}, ok: answers{200: listOf[cacheEntryView]{}}, handle: s.listCache},
		{method: "DELETE", path: "/api/v1/cache/{namespace}", role: RoleOperator, summary: "Drop every entry of a namespace's step cache", ok: answers{200: cacheDropped{}}, handle: s.dropCache},
		{method: "DELETE", path: "/api/v1/cache/{namespace}/{key}", role: RoleOperator, summary: "Drop a step cache entry: the next step with its key runs", ok: noContent, handle: s.dropCacheEntry},

		{method: "GET", path: "/api/v1/tokens", role: RoleAdmin, summary: "List API tokens (never their secrets)", ok: answers{200: listOf[Token]{}}, handle: s.listTokens},
		{method: "POST", path: "/api/v1/tokens", role: RoleAdmin, summary: "Create an API token; its secret is shown once", body: "json", in: tokenRequest{}, ok: answers{201: tokenCreated{}}, handle: s.createTokenHandler},
		{method: "DELETE", path: "/api/v1/tokens/{id}", role: RoleAdmin, summary: "Delete an API token", ok: noContent, handle: s.deleteToken},
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

func operationID(rt route) string {
	p := pathParam.ReplaceAllString(strings.TrimPrefix(rt.path, "/api/v1/"), "by-$1")
	return strings.ToLower(rt.method) + "-" + strings.ReplaceAll(p, "/", "-")
}
