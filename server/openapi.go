package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/definitions"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The bodies of requests and answers that have no type of their own elsewhere. Each is what
// a handler decodes or encodes, so that the OpenAPI document is made from the types the
// handlers use.
type (
	// listOf is a list answer: the items, and for paged lists the total matched.
	listOf[T any] struct {
		Items []T `json:"items"`
		// Total is how many match, of which items are the page asked for.
		Total *int `json:"total,omitempty"`
	}
	// loginRequest is the token the dashboard signs in with.
	loginRequest struct {
		Token string `json:"token"`
	}
	// operationRequest is what an operation on a run takes besides its kind (the path's).
	operationRequest struct {
		// Step narrows resume to one suspended step, and restart to the failed step to
		// run again from.
		Step string `json:"step,omitempty"`
		// Reason is why, in the asker's words.
		Reason string `json:"reason,omitempty"`
	}
	// validateAnswer is what /validate found: each kind's count, all valid.
	validateAnswer struct {
		OK          bool `json:"ok"`
		Runs        int  `json:"runs"`
		Templates   int  `json:"templates"`
		Definitions int  `json:"definitions"`
	}
	// runRef names a run a webhook started.
	runRef struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	}
	// definitionAnswer is a step type and the parameters its template declares.
	definitionAnswer struct {
		Definition *v1beta1.WorkflowStepDefinition `json:"definition"`
		Parameters []definitions.Parameter         `json:"parameters"`
	}
	// clusterRequest stores a cluster.
	clusterRequest struct {
		Name       string `json:"name"`
		Kubeconfig string `json:"kubeconfig"`
		// Namespaces limits the cluster to runs in these namespaces; none: every namespace.
		Namespaces []string `json:"namespaces,omitempty"`
	}
	// tokenRequest creates a token.
	tokenRequest struct {
		Name string `json:"name"`
		// Role is viewer, operator or admin.
		Role       string   `json:"role"`
		Namespaces []string `json:"namespaces,omitempty"`
	}
	// tokenCreated is a new token, with the secret shown this once.
	tokenCreated struct {
		ID         string   `json:"id"`
		Name       string   `json:"name"`
		Role       Role     `json:"role"`
		Namespaces []string `json:"namespaces,omitempty"`
		Token      string   `json:"token"`
	}
	// triggerRequest adds a trigger to a template.
	triggerRequest struct {
		// Type is webhook, cloudevents or cron.
		Type    string         `json:"type"`
		Context map[string]any `json:"context,omitempty"`
		// Filter is a cloudevents trigger's CUE expression over context.event (the event's
		// attributes and data): only the events it is true for start a run.
		Filter string `json:"filter,omitempty"`
		// Schedule (or several Schedules), TimeZone, ConcurrencyPolicy (allow, forbid or
		// replace; Allow, Forbid, Replace too), StartingDeadlineSeconds and Paused are a cron
		// trigger's.
		Schedule                string   `json:"schedule,omitempty"`
		Schedules               []string `json:"schedules,omitempty"`
		TimeZone                string   `json:"timeZone,omitempty"`
		ConcurrencyPolicy       string   `json:"concurrencyPolicy,omitempty"`
		StartingDeadlineSeconds *int64   `json:"startingDeadlineSeconds,omitempty"`
		Paused                  bool     `json:"paused,omitempty"`
	}
	// triggerCreated is a new trigger; a webhook's URL and secret are shown this once.
	triggerCreated struct {
		ID     string `json:"id"`
		Type   string `json:"type"`
		URL    string `json:"url,omitempty"`
		Secret string `json:"secret,omitempty"`
	}
	// anyObject is a Kubernetes-shaped object of any kind this API takes.
	anyObject map[string]any
	// errorAnswer is every error's body.
	errorAnswer struct {
		Error struct {
			Status   int       `json:"status"`
			Message  string    `json:"message"`
			Problems []problem `json:"problems,omitempty"`
		} `json:"error"`
	}
)

// anyOf documents a body that is one of several types, under its own name in the document's
// schemas; the first is the usual one.
type anyOf struct {
	name string
	of   []any
}

// answers are a route's successful answers by status; a nil body answers none.
type answers map[int]any

// eventStream documents a body of server-sent events.
type eventStream struct{}

// errorStatuses are the error statuses rt may answer: its own, and those every route of its
// kind may (a token's 401 and 403, a body's 400, 408 and 413, an object's 503 when the
// evaluators cannot check it, a path's 404, anyone's 500).
func (rt route) errorStatuses() []int {
	out := []int{http.StatusInternalServerError}
	if rt.role != "" {
		out = append(out, http.StatusUnauthorized, http.StatusForbidden)
	}
	if rt.body != "" || len(rt.query) > 0 {
		out = append(out, http.StatusBadRequest)
	}
	if rt.body != "" {
		out = append(out, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge)
	}
	if rt.body == "object" {
		// Objects are checked by the CUE evaluators; when they cannot check, 503 (try again).
		out = append(out, http.StatusServiceUnavailable)
	}
	if strings.Contains(rt.path, "{") {
		out = append(out, http.StatusNotFound)
	}
	out = append(out, rt.fails...)
	slices.Sort(out)
	return slices.Compact(out)
}

// openAPI serves the OpenAPI document of the route table.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, s.doc)
	return nil
}

// OpenAPI returns the OpenAPI 3.0 document of the server's routes, as GET
// /api/v1/openapi.json serves it.
func (s *Server) OpenAPI() *openapi3.T { return s.doc }

// openAPIDocument makes the OpenAPI 3.0 document of routes: every request and answer body
// typed from the Go types the handlers decode and encode, every status they answer listed.
func openAPIDocument(routes []route) (*openapi3.T, error) {
	schemas := openapi3.Schemas{}
	names := map[string]reflect.Type{}
	gen := openapi3gen.NewGenerator(
		openapi3gen.CreateComponentSchemas(openapi3gen.ExportComponentSchemasOptions{ExportComponentSchemas: true, ExportTopLevelSchema: true, ExportGenerics: true}),
		openapi3gen.CreateTypeNameGenerator(func(t reflect.Type) string { return schemaName(names, t) }),
		openapi3gen.SchemaCustomizer(customizeSchema),
	)
	schemaOf := func(v any) (*openapi3.SchemaRef, error) {
		switch v := v.(type) {
		case anyOf:
			s := &openapi3.Schema{}
			for _, alt := range v.of {
				ref, err := gen.NewSchemaRefForValue(alt, schemas)
				if err != nil {
					return nil, err
				}
				s.AnyOf = append(s.AnyOf, ref)
			}
			schemas[v.name] = openapi3.NewSchemaRef("", s)
			return openapi3.NewSchemaRef("#/components/schemas/"+v.name, nil), nil
		case anyObject:
			return openapi3.NewSchemaRef("", openapi3.NewObjectSchema().WithAnyAdditionalProperties()), nil
		}
		return gen.NewSchemaRefForValue(v, schemas)
	}
	content := func(v any) (openapi3.Content, error) {
		if _, ok := v.(eventStream); ok {
			return openapi3.NewContentWithSchema(openapi3.NewStringSchema(), []string{"text/event-stream"}), nil
		}
		ref, err := schemaOf(v)
		if err != nil {
			return nil, err
		}
		return openapi3.NewContentWithJSONSchemaRef(ref), nil
	}
	errRef, err := schemaOf(errorAnswer{})
	if err != nil {
		return nil, err
	}
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{
			Title:       "stepflow",
			Version:     "v1",
			Description: "The REST API of stepflow server: runs of KubeVela-compatible workflows, their templates, step types and triggers. docs/api.md describes it for people.",
		},
		Paths: openapi3.NewPaths(),
		Components: &openapi3.Components{
			Schemas: schemas,
			SecuritySchemes: openapi3.SecuritySchemes{
				"bearer": {Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer")},
				"cookie": {Value: openapi3.NewSecurityScheme().WithType("apiKey").WithIn("cookie").WithName(cookieToken)},
			},
		},
	}
	for _, rt := range routes {
		op := openapi3.NewOperation()
		op.Summary, op.OperationID = rt.summary, operationID(rt)
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			op.AddParameter(openapi3.NewPathParameter(m[1]).WithSchema(openapi3.NewStringSchema()))
		}
		for _, q := range rt.query {
			op.AddParameter(openapi3.NewQueryParameter(q).WithSchema(openapi3.NewStringSchema()))
		}
		if rt.body != "" {
			c, err := content(rt.in)
			if err != nil {
				return nil, fmt.Errorf("%s %s: request: %w", rt.method, rt.path, err)
			}
			if rt.body == "object" {
				c["application/yaml"] = openapi3.NewMediaType().WithSchema(openapi3.NewStringSchema())
			}
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithContent(c).WithRequired(rt.body == "object")}
		}
		op.Responses = openapi3.NewResponses()
		op.Responses.Delete("default")
		for status, body := range rt.ok {
			resp := openapi3.NewResponse().WithDescription(http.StatusText(status))
			if body != nil {
				c, err := content(body)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %d: %w", rt.method, rt.path, status, err)
				}
				resp.WithContent(c)
			}
			op.AddResponse(status, resp)
		}
		for _, status := range rt.errorStatuses() {
			op.AddResponse(status, openapi3.NewResponse().WithDescription(http.StatusText(status)).WithContent(openapi3.NewContentWithJSONSchemaRef(errRef)))
		}
		if rt.role != "" {
			op.Security = &openapi3.SecurityRequirements{{"bearer": {}}, {"cookie": {}}}
			op.Extensions = map[string]any{"x-stepflow-role": string(rt.role)}
		} else {
			op.Security = &openapi3.SecurityRequirements{}
		}
		doc.AddOperation(rt.path, rt.method, op)
	}
	// The types that encode themselves are named but not exported by the generator: their
	// schemas are the customizer's.
	for name, t := range names {
		if name != "" && schemas[name] == nil {
			s := &openapi3.Schema{}
			if err := customizeSchema("", t, "", s); err != nil {
				return nil, err
			}
			schemas[name] = openapi3.NewSchemaRef("", s)
		}
	}
	// Loaded again from its JSON, as a client would, so that its references resolve
	// (TestOpenAPIDocument validates it).
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	loaded, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("the OpenAPI document: %w", err)
	}
	return loaded, nil
}

// schemaName names t's schema in the document: its Go name with a capital, a list by its
// items' name, and a name two packages share qualified by the package.
func schemaName(names map[string]reflect.Type, t reflect.Type) string {
	name := t.Name()
	if i := strings.IndexByte(name, '['); i >= 0 {
		inner := name[i+1 : len(name)-1]
		inner = inner[strings.LastIndexAny(inner, "./*")+1:]
		name = capitalize(inner) + "List"
	} else {
		name = capitalize(name)
	}
	if other, ok := names[name]; ok && other != t {
		name = capitalize(t.PkgPath()[strings.LastIndexByte(t.PkgPath(), '/')+1:]) + name
	}
	names[name] = t
	return name
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

// customizeSchema gives the types that encode themselves (times, quantities, raw JSON) the
// schema of what they encode to.
func customizeSchema(_ string, t reflect.Type, _ reflect.StructTag, s *openapi3.Schema) error {
	switch t {
	case reflect.TypeFor[metav1.Time](), reflect.TypeFor[metav1.MicroTime]():
		// The zero time encodes as null.
		*s = *openapi3.NewDateTimeSchema().WithNullable()
	case reflect.TypeFor[metav1.Duration]():
		*s = *openapi3.NewStringSchema()
	case reflect.TypeFor[resource.Quantity](), reflect.TypeFor[intstr.IntOrString]():
		*s = openapi3.Schema{AnyOf: openapi3.SchemaRefs{openapi3.NewSchemaRef("", openapi3.NewStringSchema()), openapi3.NewSchemaRef("", openapi3.NewIntegerSchema())}}
	case reflect.TypeFor[runtime.RawExtension](), reflect.TypeFor[apiextensionsv1.JSON](), reflect.TypeFor[metav1.FieldsV1](), reflect.TypeFor[json.RawMessage]():
		// Any JSON value.
		*s = openapi3.Schema{}
	}
	if t.Kind() == reflect.Interface {
		*s = openapi3.Schema{}
	}
	return nil
}
