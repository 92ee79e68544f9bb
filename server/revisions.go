package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/store"
)

// templateRevision is a revision of a template as the API shows it; Workflow only when one
// revision is asked for.
type templateRevision struct {
	Revision int64     `json:"revision"`
	Created  time.Time `json:"created,omitzero"`
	Hash     string    `json:"hash"`
	// Current says it is the template's current revision.
	Current  bool               `json:"current"`
	Workflow *v1alpha1.Workflow `json:"workflow,omitempty"`
}

// revisionDiff is the difference between two revisions of a template.
type revisionDiff struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Diff is the unified diff of their YAML, "" when their content is the same.
	Diff string `json:"diff"`
}

func newTemplateRevision(r *store.WorkflowRevision, current int64) templateRevision {
	return templateRevision{Revision: r.Revision, Created: r.Created, Hash: r.Hash, Current: r.Revision == current}
}

// currentGeneration is the generation of the stored template namespace/name: 404 when there
// is none.
func (s *Server) currentGeneration(r *http.Request, ns, name string) (int64, error) {
	if err := seesOrNotFound(r.Context(), "template", ns, name); err != nil {
		return 0, err
	}
	wf, err := s.store.Workflow(r.Context(), ns, name)
	if err != nil {
		return 0, err
	}
	return wf.Generation, nil
}

func (s *Server) templateRevisions(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	current, err := s.currentGeneration(r, ns, name)
	if err != nil {
		return err
	}
	revs, err := s.store.WorkflowRevisions(r.Context(), ns, name)
	if err != nil {
		return err
	}
	items := make([]templateRevision, 0, len(revs))
	for i := range revs {
		items = append(items, newTemplateRevision(&revs[i], current))
	}
	writeJSON(w, http.StatusOK, listOf[templateRevision]{Items: items})
	return nil
}

// revisionParam is the revision number in a request's path or query as param names it.
func revisionParam(param, value string) (int64, error) {
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil || n < 1 {
		return 0, errorf(http.StatusBadRequest, "%s=%q: want a revision number (1 or more)", param, value)
	}
	return n, nil
}

// revision reads the revision the request names in param of the template namespace/name.
func (s *Server) revision(r *http.Request, ns, name, param, value string) (*store.WorkflowRevision, error) {
	n, err := revisionParam(param, value)
	if err != nil {
		return nil, err
	}
	return s.store.WorkflowRevision(r.Context(), ns, name, n)
}

func (s *Server) templateRevision(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	current, err := s.currentGeneration(r, ns, name)
	if err != nil {
		return err
	}
	rev, err := s.revision(r, ns, name, "revision", r.PathValue("revision"))
	if err != nil {
		return err
	}
	v := newTemplateRevision(rev, current)
	v.Workflow = withWorkflowKind(rev.Workflow)
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) templateDiff(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	current, err := s.currentGeneration(r, ns, name)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	to := q.Get("to")
	if to == "" {
		to = strconv.FormatInt(current, 10)
	}
	a, err := s.revision(r, ns, name, "from", q.Get("from"))
	if err != nil {
		return err
	}
	b, err := s.revision(r, ns, name, "to", to)
	if err != nil {
		return err
	}
	d, err := store.DiffRevisions(a, b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, revisionDiff{From: a.Revision, To: b.Revision, Diff: d})
	return nil
}

func (s *Server) rollbackTemplate(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if _, err := s.currentGeneration(r, ns, name); err != nil {
		return err
	}
	var req rollbackRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Revision < 1 {
		return errorf(http.StatusBadRequest, "revision: want a revision number (1 or more)")
	}
	wf, err := store.Rollback(r.Context(), s.store, ns, name, req.Revision)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, withWorkflowKind(wf))
	return nil
}
