package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/redact"
	"github.com/stepflow/stepflow/store"
)

// bodyName is how a request's body is named in the problems found in it.
const bodyName = "request body"

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, identityOf(r.Context()))
	return nil
}

// runKey is the run a request's path names; 404 when the caller may not see its namespace.
func runKey(r *http.Request) (engine.Key, error) {
	key := engine.Key{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if !identityOf(r.Context()).sees(key.Namespace) {
		return key, errorf(http.StatusNotFound, "run %s: not found", key)
	}
	return key, nil
}

// templateRun is the body of a run of a template.
type templateRun struct {
	Template  string         `json:"template"`
	Namespace string         `json:"namespace,omitempty"`
	Name      string         `json:"name,omitempty"`
	Context   map[string]any `json:"context,omitempty"`
	// Revision, when set, runs that kept revision of the template rather than its current one.
	Revision int64 `json:"revision,omitempty"`
}

func (s *Server) createRunHandler(w http.ResponseWriter, r *http.Request) error {
	var wait time.Duration
	if q := r.URL.Query().Get("wait"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil || d < 0 {
			return errorf(http.StatusBadRequest, "wait=%q: want a duration such as 30s", q)
		}
		wait = min(d, s.opts.MaxWait)
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if wait > 0 {
		// The body is read: the answer may come up to wait later than the server's timeouts.
		extendDeadlines(w, time.Now().Add(wait+time.Minute))
	}
	var obj *v1alpha1.WorkflowRun
	var objs *manifest.Objects
	if tr, ok, err := asTemplateRun(body, isYAML(r)); err != nil {
		return err
	} else if ok {
		obj, err = s.templateRunObject(r.Context(), tr, field.NewPath("context"))
		if err != nil {
			return err
		}
	} else {
		objs, err = manifest.Decode(bodyName, body)
		if err != nil {
			return invalid(err)
		}
		if len(objs.Runs) != 1 || len(objs.Workflows)+len(objs.Definitions)+len(objs.Delivery()) > 0 {
			return errorf(http.StatusBadRequest, "the body must be one WorkflowRun, or {\"template\": NAME, \"context\": {...}}")
		}
		obj = objs.Runs[0]
	}
	if !identityOf(r.Context()).sees(obj.Namespace) {
		return errorf(http.StatusForbidden, "the token may not create runs in namespace %q", obj.Namespace)
	}
	var settled <-chan []byte
	if wait > 0 {
		if obj.Name == "" {
			obj.Name = generateName(obj.GenerateName)
		}
		var cancel func()
		settled, cancel = s.hub.wait(engine.Key{Namespace: obj.Namespace, Name: obj.Name})
		defer cancel()
	}
	run, err := s.createRun(r.Context(), obj, objs)
	if err != nil {
		return err
	}
	if wait == 0 {
		return s.writeRun(w, http.StatusCreated, run)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case data := <-settled:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data)
		return nil
	case <-timer.C:
	case <-r.Context().Done():
		return nil
	}
	run, err = s.store.Load(r.Context(), run.Key())
	if err != nil {
		return err
	}
	status := http.StatusAccepted
	if engine.Settled(run) {
		status = http.StatusOK
	}
	return s.writeRun(w, status, run)
}

// asTemplateRun tells a run of a template ({"template": ...}) from a WorkflowRun.
func asTemplateRun(body []byte, yamlBody bool) (*templateRun, bool, error) {
	trimmed := bytes.TrimSpace(body)
	if yamlBody || len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, false, nil
	}
	if !hasTemplateKey(trimmed) {
		return nil, false, nil // a WorkflowRun, or a syntax error the manifest decoder locates
	}
	var tr templateRun
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tr); err != nil {
		return nil, false, errorf(http.StatusBadRequest, "a run of a template is {\"template\", \"namespace\", \"name\", \"context\", \"revision\"}: %v", err)
	}
	return &tr, true, nil
}

// hasTemplateKey reports whether body is a JSON object with a "template" key.
func hasTemplateKey(body []byte) bool {
	var probe map[string]json.RawMessage
	ok := json.Unmarshal(body, &probe) == nil
	_, has := probe["template"]
	return ok && has
}

// templateRunObject makes the WorkflowRun of a run of a template: its context checked against
// the template's parameters (problems reported under base) and completed with their defaults.
func (s *Server) templateRunObject(ctx context.Context, tr *templateRun, base *field.Path) (*v1alpha1.WorkflowRun, error) {
	if tr.Template == "" {
		return nil, invalidFields(field.ErrorList{field.Required(field.NewPath("template"), "the template to run")})
	}
	if tr.Namespace == "" {
		tr.Namespace = manifest.DefaultNamespace
	}
	if !identityOf(ctx).sees(tr.Namespace) {
		return nil, errorf(http.StatusNotFound, "template %s/%s: not found", tr.Namespace, tr.Template)
	}
	wf, err := s.runTemplate(ctx, tr.Namespace, tr.Template, tr.Revision)
	if err != nil {
		return nil, err
	}
	full, errs := v1alpha1.ApplyParameters(wf.Parameters, tr.Context, base)
	if len(errs) > 0 {
		return nil, invalidFields(errs)
	}
	raw, err := json.Marshal(full)
	if err != nil {
		return nil, err
	}
	obj := &v1alpha1.WorkflowRun{}
	obj.Namespace, obj.Name = tr.Namespace, tr.Name
	if obj.Name == "" {
		obj.GenerateName = tr.Template + "-"
	}
	obj.Spec.WorkflowRef = tr.Template
	obj.Spec.Context = &runtime.RawExtension{Raw: raw}
	obj.Annotations = map[string]string{AnnotationTemplateVersion: strconv.FormatInt(wf.Generation, 10)}
	if tr.Revision > 0 {
		obj.Annotations[v1alpha1.AnnotationTemplateRevision] = strconv.FormatInt(tr.Revision, 10)
	}
	return obj, nil
}

// runTemplate is the template a run of namespace/name starts from: its revision rev when
// rev is set, else the current one; 404 when it is not stored.
func (s *Server) runTemplate(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	if rev == 0 {
		wf, err := s.store.Workflow(ctx, namespace, name)
		if errors.Is(err, engine.ErrNotFound) {
			return nil, errorf(http.StatusNotFound, "template %s/%s: not found", namespace, name)
		}
		return wf, err
	}
	if rev < 0 {
		return nil, errorf(http.StatusBadRequest, "revision: want a revision number (1 or more)")
	}
	r, err := s.store.WorkflowRevision(ctx, namespace, name, rev)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "revision %d of template %s/%s: not found", rev, namespace, name)
	}
	if err != nil {
		return nil, err
	}
	return r.Workflow, nil
}

// generateName returns prefix and five random characters, as Kubernetes does.
func generateName(prefix string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := []byte(randomHex(5))
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

// createRun checks a new run and stores it, replacing a finished run of the same name (a
// compare-and-swap on the version found finished), and queues it. objs, when the run came as a document, locates the problems found in it.
func (s *Server) createRun(ctx context.Context, obj *v1alpha1.WorkflowRun, objs *manifest.Objects) (*engine.Run, error) {
	if obj.Namespace == "" {
		obj.Namespace = manifest.DefaultNamespace
	}
	if obj.Name == "" {
		obj.Name = generateName(obj.GenerateName)
	}
	var sensitive []string
	if obj.Spec.WorkflowSpec == nil && obj.Spec.WorkflowRef != "" {
		rev, _ := strconv.ParseInt(obj.Annotations[v1alpha1.AnnotationTemplateRevision], 10, 64)
		if wf, err := s.runTemplate(ctx, obj.Namespace, obj.Spec.WorkflowRef, max(rev, 0)); err == nil {
			if obj.Annotations[AnnotationTemplateVersion] == "" {
				if obj.Annotations == nil {
					obj.Annotations = map[string]string{}
				}
				obj.Annotations[AnnotationTemplateVersion] = strconv.FormatInt(wf.Generation, 10)
			}
			// Known now, so that the answer to this request hides them already (the engine
			// learns them again when the run starts).
			full, _ := v1alpha1.RunContext(obj, wf)
			sensitive = redact.Merge(nil, redact.Leaves(v1alpha1.SensitiveValues(wf.Parameters, full))...)
		}
	}
	if objs == nil {
		objs = &manifest.Objects{Runs: []*v1alpha1.WorkflowRun{obj}}
	}
	if err := s.catalog.Check(ctx, s.runner, objs); err != nil {
		return nil, invalid(err)
	}
	obj.Status = v1alpha1.WorkflowRunStatus{}
	run := &engine.Run{Object: obj, Sensitive: sensitive, Checked: true}
	key := run.Key()
	// A finished run of the name is replaced only at the version found finished here: of
	// requests racing for the name, one is answered 201, the others 409.
	replaces := store.CreateNew
	old, err := s.store.Load(ctx, key)
	switch {
	case err == nil && !old.Object.Status.Finished:
		return nil, errorf(http.StatusConflict, "run %s exists and is %s: terminate or delete it first", key, orUnstarted(old.Object.Status.Phase))
	case err == nil:
		replaces = old.Version
	case !errors.Is(err, engine.ErrNotFound):
		return nil, err
	}
	if err := s.store.Create(ctx, run, replaces); err != nil {
		if errors.Is(err, store.ErrExists) || errors.Is(err, engine.ErrConflict) {
			return nil, errorf(http.StatusConflict, "run %s exists: another request created it meanwhile", key)
		}
		return nil, err
	}
	s.eng.Enqueue(key)
	return run, nil
}

func orUnstarted(p v1alpha1.WorkflowRunPhase) string {
	if p == "" {
		return "not started"
	}
	return string(p)
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	opts := store.ListOptions{Namespace: q.Get("namespace"), Phase: q.Get("phase"), Template: q.Get("template"), Newest: true, Limit: 100}
	var err error
	if opts.StartedAfter, err = queryTime(q.Get("since"), "since"); err != nil {
		return err
	}
	if opts.StartedBefore, err = queryTime(q.Get("until"), "until"); err != nil {
		return err
	}
	if v := q.Get("limit"); v != "" {
		if opts.Limit, err = strconv.Atoi(v); err != nil || opts.Limit < 1 || opts.Limit > 1000 {
			return errorf(http.StatusBadRequest, "limit=%q: want 1 to 1000", v)
		}
	}
	if v := q.Get("offset"); v != "" {
		if opts.Offset, err = strconv.Atoi(v); err != nil || opts.Offset < 0 {
			return errorf(http.StatusBadRequest, "offset=%q: want a number from 0", v)
		}
	}
	id := identityOf(r.Context())
	namespaces := []string{opts.Namespace}
	switch {
	case opts.Namespace != "" && !id.sees(opts.Namespace):
		writeJSON(w, http.StatusOK, listOf[summaryView]{Items: []summaryView{}, Total: new(0)})
		return nil
	case opts.Namespace == "" && len(id.Namespaces) > 0:
		namespaces = id.Namespaces
	}
	items, total, err := s.listIn(r.Context(), opts, namespaces)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listOf[summaryView]{Items: items, Total: &total})
	return nil
}

// listIn lists the runs of opts in each of namespaces, newest first, paged as opts says.
func (s *Server) listIn(ctx context.Context, opts store.ListOptions, namespaces []string) ([]summaryView, int, error) {
	var all []store.RunSummary
	total := 0
	page := opts
	if len(namespaces) > 1 {
		page.Offset, page.Limit = 0, opts.Offset+opts.Limit
	}
	for _, ns := range namespaces {
		page.Namespace = ns
		runs, err := s.store.List(ctx, page)
		if err != nil {
			return nil, 0, err
		}
		n, err := s.store.Count(ctx, page)
		if err != nil {
			return nil, 0, err
		}
		all, total = append(all, runs...), total+n
	}
	if len(namespaces) > 1 {
		slices.SortFunc(all, newest)
		all = all[min(opts.Offset, len(all)):]
		all = all[:min(opts.Limit, len(all))]
	}
	items := make([]summaryView, 0, len(all))
	for _, r := range all {
		items = append(items, newSummaryView(r))
	}
	return items, total, nil
}

// newest orders runs by creation, newest first, then by namespace and name, as the stores'
// List does with ListOptions.Newest.
func newest(a, b store.RunSummary) int {
	if c := b.Created.Compare(a.Created); c != 0 {
		return c
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

func queryTime(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "%s=%q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", name, v)
	}
	return t, nil
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) error {
	key, err := runKey(r)
	if err != nil {
		return err
	}
	run, err := s.store.Load(r.Context(), key)
	if err != nil {
		return err
	}
	if stepName := r.URL.Query().Get("iterations"); stepName != "" {
		l := run.Loops[stepName]
		if l == nil {
			return errorf(http.StatusNotFound, "run %s: step %q has no iterations (not a looping step, or not started)", key, stepName)
		}
		return writeOfRun(w, http.StatusOK, run, listOf[*engine.Iteration]{Items: l.Iterations, Total: new(len(l.Items))})
	}
	return s.writeRun(w, http.StatusOK, run)
}

func (s *Server) deleteRun(w http.ResponseWriter, r *http.Request) error {
	key, err := runKey(r)
	if err != nil {
		return err
	}
	run, err := s.store.Load(r.Context(), key)
	if err != nil {
		return err
	}
	if !run.Object.Status.Finished {
		op := engine.Operation{Kind: engine.OpTerminate, By: identityOf(r.Context()).Name, Reason: "the run was deleted"}
		if _, err := s.eng.Operate(r.Context(), key, op); err != nil && !errors.Is(err, engine.ErrInvalidOperation) {
			return err
		}
	}
	if err := s.store.Delete(r.Context(), key); err != nil {
		return err
	}
	s.hub.deleted(key)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) operateRun(w http.ResponseWriter, r *http.Request) error {
	key, err := runKey(r)
	if err != nil {
		return err
	}
	// The body is the operation's other fields (step, reason); its kind is the route's, and who
	// asks is the token's name.
	var op engine.Operation
	if err := decodeJSON(r, &op); err != nil {
		return err
	}
	op.Kind = engine.OperationKind(r.PathValue("operation"))
	if !slices.Contains(engine.OperationKinds, op.Kind) {
		return errorf(http.StatusNotFound, "%v", op.Validate())
	}
	op.By = identityOf(r.Context()).Name
	run, err := s.eng.Operate(r.Context(), key, op)
	if err != nil {
		return err
	}
	return s.writeRun(w, http.StatusOK, run)
}

func (s *Server) runLogs(w http.ResponseWriter, r *http.Request) error {
	key, err := runKey(r)
	if err != nil {
		return err
	}
	run, err := s.store.Load(r.Context(), key)
	if err != nil {
		return err
	}
	step := r.URL.Query().Get("step")
	if step != "" && !run.HasStep(step) {
		return fmt.Errorf("run %s has no step %q: %w", key, step, engine.ErrNotFound)
	}
	logs, err := s.store.Logs(r.Context(), key, step)
	if err != nil {
		return err
	}
	if logs == nil {
		logs = []engine.LogEntry{}
	}
	return writeOfRun(w, http.StatusOK, run, listOf[engine.LogEntry]{Items: logs})
}

// runEvents streams a run: a snapshot and its log so far, then each change as it is saved.
func (s *Server) runEvents(w http.ResponseWriter, r *http.Request) error {
	key, err := runKey(r)
	if err != nil {
		return err
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		return errors.New("the connection cannot stream")
	}
	sub := s.hub.subscribe(key)
	defer s.hub.unsubscribe(key, sub)
	run, err := s.store.Load(r.Context(), key)
	if err != nil {
		return err
	}
	logs, err := s.store.Logs(r.Context(), key, "")
	if err != nil {
		return err
	}
	// The stream is open from here: errors end it rather than answer. It outlives the
	// server's timeouts; each write has streamWriteTimeout to reach the client.
	extendDeadlines(w, time.Time{})
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	from := run.Version
	data, err := ofRun(run, newRunView(run, s.hub.retention))
	if err != nil {
		return nil
	}
	writeEvent(w, "run", data)
	sent := 0 // log entries sent
	sendLogs := func(run *engine.Run, logs []engine.LogEntry) {
		for _, l := range logs[min(sent, len(logs)):] {
			if b, err := ofRun(run, l); err == nil {
				writeEvent(w, "log", b)
			}
		}
		sent = max(sent, len(logs))
	}
	sendLogs(run, logs)
	flusher.Flush()
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		select {
		case <-r.Context().Done():
			return nil
		case <-sub.gone:
			return nil
		case <-keepAlive.C:
			_, _ = fmt.Fprint(w, ": keep-alive\n\n")
		case ev := <-sub.events:
			if ev.version != 0 && ev.version <= from {
				continue
			}
			if ev.name == syncLogs {
				// Redacted with the run as stored now: it knows every value the entries may hold.
				latest, err := s.store.Load(r.Context(), key)
				logs, lerr := s.store.Logs(r.Context(), key, "")
				if err == nil && lerr == nil {
					sendLogs(latest, logs)
				}
				break
			}
			if ev.name == "log" {
				sent++
			}
			writeEvent(w, ev.name, ev.data)
			if ev.name == "deleted" {
				flusher.Flush()
				return nil
			}
		}
		flusher.Flush()
	}
}

// streamWriteTimeout bounds each write of an event stream: a client that stops reading loses
// its stream (and its connection) rather than holding them.
const streamWriteTimeout = time.Minute

// extendDeadlines lets a request that answers late, an event stream or a ?wait, outlive the
// server's read and write timeouts (http.Server's, which bound the others): its body is read,
// and it has until until to answer (zero: no bound). Without it, the connection's read
// deadline would cancel the request as it passed.
func extendDeadlines(w http.ResponseWriter, until time.Time) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(until)
	_ = rc.SetWriteDeadline(until)
}

func writeEvent(w http.ResponseWriter, name string, data []byte) {
	_, _ = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, strings.ReplaceAll(string(data), "\n", "\ndata: "))
}
