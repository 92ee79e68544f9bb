package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/store"
)

// builtinNamespace names the built-in step types in the definitions' paths.
const builtinNamespace = "builtin"

// decodeObjects reads a body of Kubernetes-shaped objects (JSON or YAML) and checks them as
// `stepflow vet` does; problems answer 400 with their lines and field paths. An object in a
// namespace the caller may not see answers 403 before anything is checked: the checks look
// the namespace's templates and step types up, and their answers would tell what it holds.
func (s *Server) decodeObjects(r *http.Request) (*manifest.Objects, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	objs, err := manifest.Decode(bodyName, body)
	if err != nil {
		return nil, invalid(err)
	}
	if err := seesAll(r.Context(), objs); err != nil {
		return nil, err
	}
	if err := s.catalog.Check(r.Context(), s.runner, objs); err != nil {
		return nil, invalid(err)
	}
	return objs, nil
}

func (s *Server) validate(w http.ResponseWriter, r *http.Request) error {
	objs, err := s.decodeObjects(r)
	if err != nil {
		return err
	}
	// As vet does: a property its step type does not declare is refused here, taken by create.
	if err := s.catalog.Undeclared(r.Context(), objs); err != nil {
		return invalid(err)
	}
	writeJSON(w, http.StatusOK, validateAnswer{OK: true, Runs: len(objs.Runs), Templates: len(objs.Workflows), Definitions: len(objs.Definitions)})
	return nil
}

// seesAll answers 403 for objects of a namespace the caller may not see, as a create there
// does.
func seesAll(ctx context.Context, objs *manifest.Objects) error {
	id := identityOf(ctx)
	var namespaces []string
	for _, o := range objs.Runs {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, o := range objs.Workflows {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, o := range objs.Definitions {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, o := range objs.Packages {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, o := range objs.Applications {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, o := range objs.ComponentDefinitions {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, o := range objs.TraitDefinitions {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, o := range objs.PolicyDefinitions {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, o := range objs.ApplicationRevisions {
		namespaces = append(namespaces, o.Namespace)
	}
	for _, ns := range namespaces {
		if !id.sees(ns) {
			return errorf(http.StatusForbidden, "the token may not use namespace %q", ns)
		}
	}
	return nil
}

// seesOrNotFound answers 404 for an object of a namespace the caller may not see.
func seesOrNotFound(ctx context.Context, kind, namespace, name string) error {
	if !identityOf(ctx).sees(namespace) {
		return errorf(http.StatusNotFound, "%s %s/%s: not found", kind, namespace, name)
	}
	return nil
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	wfs, err := s.store.Workflows(r.Context(), r.URL.Query().Get("namespace"))
	if err != nil {
		return err
	}
	id := identityOf(r.Context())
	items := []*v1alpha1.Workflow{}
	for _, wf := range wfs {
		if id.sees(wf.Namespace) {
			items = append(items, withWorkflowKind(wf))
		}
	}
	writeJSON(w, http.StatusOK, listOf[*v1alpha1.Workflow]{Items: items})
	return nil
}

func withWorkflowKind(wf *v1alpha1.Workflow) *v1alpha1.Workflow {
	wf.APIVersion, wf.Kind = v1alpha1.GroupVersion.String(), v1alpha1.KindWorkflow
	return wf
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "template", ns, name); err != nil {
		return err
	}
	wf, err := s.store.Workflow(r.Context(), ns, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, withWorkflowKind(wf))
	return nil
}

// oneWorkflow reads a body holding one Workflow, checked, in a namespace the caller may write
// (decodeObjects).
func (s *Server) oneWorkflow(r *http.Request) (*v1alpha1.Workflow, error) {
	objs, err := s.decodeObjects(r)
	if err != nil {
		return nil, err
	}
	if len(objs.Workflows) != 1 || len(objs.Runs)+len(objs.Definitions)+len(objs.Delivery()) > 0 {
		return nil, errorf(http.StatusBadRequest, "the body must be one Workflow (apiVersion core.oam.dev/v1alpha1, kind Workflow)")
	}
	return objs.Workflows[0], nil
}

func (s *Server) createTemplate(w http.ResponseWriter, r *http.Request) error {
	wf, err := s.oneWorkflow(r)
	if err != nil {
		return err
	}
	if _, err := s.store.Workflow(r.Context(), wf.Namespace, wf.Name); err == nil {
		return errorf(http.StatusConflict, "template %s/%s exists: PUT it to update it", wf.Namespace, wf.Name)
	} else if !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	return s.storeTemplate(w, r, wf, http.StatusCreated)
}

func (s *Server) putTemplate(w http.ResponseWriter, r *http.Request) error {
	if err := seesOrNotFound(r.Context(), "template", r.PathValue("namespace"), r.PathValue("name")); err != nil {
		return err // before the body is read: another namespace's token learns nothing from it
	}
	wf, err := s.oneWorkflow(r)
	if err != nil {
		return err
	}
	if wf.Namespace != r.PathValue("namespace") || wf.Name != r.PathValue("name") {
		return errorf(http.StatusBadRequest, "the body is Workflow %s/%s, the path names %s/%s", wf.Namespace, wf.Name, r.PathValue("namespace"), r.PathValue("name"))
	}
	return s.storeTemplate(w, r, wf, http.StatusOK)
}

func (s *Server) storeTemplate(w http.ResponseWriter, r *http.Request, wf *v1alpha1.Workflow, status int) error {
	if err := s.store.PutObjects(r.Context(), nil, []*v1alpha1.Workflow{wf}); err != nil {
		return err
	}
	stored, err := s.store.Workflow(r.Context(), wf.Namespace, wf.Name)
	if err != nil {
		return err
	}
	writeJSON(w, status, withWorkflowKind(stored))
	return nil
}

func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "template", ns, name); err != nil {
		return err
	}
	if err := s.store.DeleteWorkflow(r.Context(), ns, name); err != nil {
		return err
	}
	if err := s.deleteTriggersOf(r.Context(), ns, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// definitionSummary is a step type in a list.
type definitionSummary struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Builtin     bool   `json:"builtin"`
	Description string `json:"description,omitempty"`
}

func (s *Server) listDefinitions(w http.ResponseWriter, r *http.Request) error {
	ns := r.URL.Query().Get("namespace")
	defs, err := s.store.Definitions(r.Context(), ns)
	if err != nil {
		return err
	}
	id := identityOf(r.Context())
	items := []definitionSummary{}
	for _, d := range defs {
		if id.sees(d.Namespace) {
			items = append(items, definitionSummary{Namespace: d.Namespace, Name: d.Name, Description: d.Annotations[v1beta1.AnnotationDescription]})
		}
	}
	if ns == "" || ns == builtinNamespace {
		for _, d := range definitions.Builtin() {
			items = append(items, definitionSummary{Namespace: builtinNamespace, Name: d.Name, Builtin: true, Description: d.Annotations[v1beta1.AnnotationDescription]})
		}
	}
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].Builtin != items[j].Builtin {
			return !items[i].Builtin
		}
		return items[i].Namespace+"/"+items[i].Name < items[j].Namespace+"/"+items[j].Name
	})
	writeJSON(w, http.StatusOK, listOf[definitionSummary]{Items: items})
	return nil
}

func (s *Server) getDefinition(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	var def *v1beta1.WorkflowStepDefinition
	if ns == builtinNamespace {
		for _, d := range definitions.Builtin() {
			if d.Name == name {
				def = d
			}
		}
		if def == nil {
			return errorf(http.StatusNotFound, "no built-in step type %q", name)
		}
	} else {
		if err := seesOrNotFound(r.Context(), "definition", ns, name); err != nil {
			return err
		}
		defs, err := s.store.Definitions(r.Context(), ns)
		if err != nil {
			return err
		}
		for _, d := range defs {
			if d.Name == name {
				def = d
			}
		}
		if def == nil {
			return errorf(http.StatusNotFound, "definition %s/%s: not found", ns, name)
		}
	}
	def.APIVersion, def.Kind = v1beta1.GroupVersion.String(), v1beta1.KindWorkflowStepDefinition
	params := []definitions.Parameter{}
	if def.Spec.Schematic != nil && def.Spec.Schematic.CUE != nil {
		if p, err := s.runner.Describe(r.Context(), def.Spec.Schematic.CUE.Template); err == nil {
			params = p
		}
	}
	writeJSON(w, http.StatusOK, definitionAnswer{Definition: def, Parameters: params})
	return nil
}

// oneDefinition reads a body holding one definition, checked, in a namespace the caller may
// write.
func (s *Server) oneDefinition(r *http.Request) (*v1beta1.WorkflowStepDefinition, error) {
	objs, err := s.decodeObjects(r)
	if err != nil {
		return nil, err
	}
	if len(objs.Definitions) != 1 || len(objs.Runs)+len(objs.Workflows)+len(objs.Delivery()) > 0 {
		return nil, errorf(http.StatusBadRequest, "the body must be one WorkflowStepDefinition (apiVersion core.oam.dev/v1beta1)")
	}
	return objs.Definitions[0], nil
}

func (s *Server) createDefinition(w http.ResponseWriter, r *http.Request) error {
	d, err := s.oneDefinition(r)
	if err != nil {
		return err
	}
	if _, err := s.store.Template(r.Context(), d.Namespace, d.Name); err == nil {
		return errorf(http.StatusConflict, "definition %s/%s exists: PUT it to update it", d.Namespace, d.Name)
	} else if !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	return s.storeDefinition(w, r, d, http.StatusCreated)
}

func (s *Server) putDefinition(w http.ResponseWriter, r *http.Request) error {
	if err := seesOrNotFound(r.Context(), "definition", r.PathValue("namespace"), r.PathValue("name")); err != nil {
		return err
	}
	d, err := s.oneDefinition(r)
	if err != nil {
		return err
	}
	if d.Namespace != r.PathValue("namespace") || d.Name != r.PathValue("name") {
		return errorf(http.StatusBadRequest, "the body is definition %s/%s, the path names %s/%s", d.Namespace, d.Name, r.PathValue("namespace"), r.PathValue("name"))
	}
	return s.storeDefinition(w, r, d, http.StatusOK)
}

func (s *Server) storeDefinition(w http.ResponseWriter, r *http.Request, d *v1beta1.WorkflowStepDefinition, status int) error {
	err := s.store.PutObjects(r.Context(), []*v1beta1.WorkflowStepDefinition{d}, nil)
	s.catalog.Invalidate()
	if err != nil {
		return err
	}
	d.APIVersion, d.Kind = v1beta1.GroupVersion.String(), v1beta1.KindWorkflowStepDefinition
	writeJSON(w, status, d)
	return nil
}

func (s *Server) deleteDefinition(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if err := seesOrNotFound(r.Context(), "definition", ns, name); err != nil {
		return err
	}
	err := s.store.DeleteDefinition(r.Context(), ns, name)
	s.catalog.Invalidate()
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Tokens.

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	tokens, _, err := Tokens(r.Context(), s.store)
	if err != nil {
		return err
	}
	// An admin limited to namespaces sees the tokens it could have made: those limited to
	// some of its namespaces.
	id := identityOf(r.Context())
	items := []Token{}
	for _, t := range tokens {
		if id.within(t.Namespaces) {
			items = append(items, t)
		}
	}
	writeJSON(w, http.StatusOK, listOf[Token]{Items: items})
	return nil
}

func (s *Server) createTokenHandler(w http.ResponseWriter, r *http.Request) error {
	var body tokenRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	role, err := ParseRole(body.Role)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if body.Name == "" {
		return errorf(http.StatusBadRequest, "name: a token needs a name")
	}
	if err := checkNamespaces(body.Namespaces); err != nil {
		return err
	}
	// A token limited to namespaces may not make one that sees more.
	if id := identityOf(r.Context()); !id.within(body.Namespaces) {
		return errorf(http.StatusForbidden, "namespaces: the token is limited to namespaces %v: so must the new one be, to some of them", id.Namespaces)
	}
	t, secret, err := CreateToken(r.Context(), s.store, body.Name, role, body.Namespaces, s.clock.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, tokenCreated{ID: t.ID, Name: t.Name, Role: t.Role, Namespaces: t.Namespaces, Token: secret})
	return nil
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	t, key, err := findToken(r.Context(), s.store, r.PathValue("id"))
	if err != nil {
		return err
	}
	// An admin limited to namespaces deletes only the tokens it lists.
	if !identityOf(r.Context()).within(t.Namespaces) {
		return errorf(http.StatusNotFound, "token %q: not found", t.ID)
	}
	if err := s.store.DeleteRecord(r.Context(), recordToken, key); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// DeleteToken deletes the token with that id; the error wraps engine.ErrNotFound when there
// is none.
func DeleteToken(ctx context.Context, st store.Records, id string) error {
	_, key, err := findToken(ctx, st, id)
	if err != nil {
		return err
	}
	return st.DeleteRecord(ctx, recordToken, key)
}

// findToken finds the token with that id and the key it is stored under; the error wraps
// engine.ErrNotFound when there is none.
func findToken(ctx context.Context, st store.Records, id string) (Token, string, error) {
	tokens, keys, err := Tokens(ctx, st)
	if err != nil {
		return Token{}, "", err
	}
	for i, t := range tokens {
		if t.ID == id {
			return t, keys[i], nil
		}
	}
	return Token{}, "", fmt.Errorf("token %q: %w", id, engine.ErrNotFound)
}

// decodeRecord decodes a record's JSON into v, naming the record when it cannot.
func decodeRecord(kind, key string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s record %s: %w", kind, key, err)
	}
	return nil
}

// xdefinitionSummary is a built-in X-Definition in a list: what an Application's designer
// needs to offer it and make its properties form.
type xdefinitionSummary struct {
	// Kind is component, trait or policy.
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// AppliesTo lists the workloads a trait applies to (empty: any).
	AppliesTo  []string                `json:"appliesTo,omitempty"`
	Parameters []definitions.Parameter `json:"parameters"`
}

// listXDefinitions answers the built-in component, trait and policy types, each with the
// parameters its template declares (described under the bounds of an evaluation).
func (s *Server) listXDefinitions(w http.ResponseWriter, r *http.Request) error {
	items := []xdefinitionSummary{}
	for _, kind := range []string{"component", "trait", "policy"} {
		for _, x := range definitions.XDefinitions(kind) {
			params, err := s.runner.Describe(r.Context(), x.Template)
			if err != nil || params == nil {
				params = []definitions.Parameter{}
			}
			items = append(items, xdefinitionSummary{Kind: kind, Name: x.Name, Description: x.Description, AppliesTo: x.AppliesTo, Parameters: params})
		}
	}
	writeJSON(w, http.StatusOK, listOf[xdefinitionSummary]{Items: items})
	return nil
}
