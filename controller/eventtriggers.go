package controller

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/netutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/events"
)

// maxEventBody bounds an event's body, as stepflow server's default MaxBody does.
const maxEventBody = 1 << 20

// maxEventTriggerPrefix bounds the part of a run's name taken from its trigger's name, so that
// the name with its hash stays a valid object name.
const maxEventTriggerPrefix = 52

// conditions evaluates a CUE condition (the assembly's Runner).
type conditions interface {
	EvalIf(ctx context.Context, expr string, scope map[string]any) (bool, error)
}

// eventTriggers serves POST /events/{namespace}/{name}: a CloudEvent that the
// WorkflowEventTrigger's filter selects creates a WorkflowRun of its runTemplate, named after
// the trigger and the event's source and id, so that a repeated delivery creates nothing and
// is answered as the first was.
type eventTriggers struct {
	c    *Controller
	cond conditions
}

// EventsHandler is the handler of the events listener (`--events-listen`): POST
// /events/{namespace}/{name} with a CloudEvent in structured or binary mode and the bearer
// token of the WorkflowEventTrigger's secretRef.
func (c *Controller) EventsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /events/{namespace}/{name}", &eventTriggers{c: c, cond: c.conditions})
	return mux
}

// maxEventConnections bounds the events listener's open connections.
const maxEventConnections = 1024

// serveEvents listens on addr and serves EventsHandler until ctx ends.
func (c *Controller) serveEvents(ctx context.Context, addr string) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("events listener: %w", err)
	}
	// At most maxEventConnections open at once, as the server bounds its own (--max-connections):
	// slow senders wait to be accepted rather than hold the process's descriptors.
	ln = netutil.LimitListener(ln, maxEventConnections)
	srv := &http.Server{
		Handler:           c.EventsHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("events listener: %w", err)
	}
	return nil
}

// eventAnswerError is an answer other than a run: its status and message.
type eventAnswerError struct {
	status int
	msg    string
}

func (e *eventAnswerError) Error() string { return e.msg }

// ServeHTTP implements http.Handler.
func (t *eventTriggers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := t.serve(w, r); err != nil {
		ae, ok := errors.AsType[*eventAnswerError](err)
		if !ok {
			t.c.log.Error("event trigger failed", "path", r.URL.Path, "err", err)
			ae = &eventAnswerError{status: http.StatusInternalServerError, msg: "internal error; the controller's log has the details"}
		}
		var body struct {
			Error struct {
				Status  int    `json:"status"`
				Message string `json:"message"`
			} `json:"error"`
		}
		body.Error.Status, body.Error.Message = ae.status, ae.msg
		writeEventJSON(w, ae.status, body)
	}
}

func (t *eventTriggers) serve(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	key := client.ObjectKey{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	var et v1alpha1.WorkflowEventTrigger
	if err := t.c.direct.Get(ctx, key, &et); err != nil {
		if apierrors.IsNotFound(err) {
			return &eventAnswerError{http.StatusNotFound, fmt.Sprintf("no WorkflowEventTrigger %s", key)}
		}
		return err
	}
	if err := t.authenticate(ctx, r, &et); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBody))
	if err != nil {
		if tooBig, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &eventAnswerError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", tooBig.Limit)}
		}
		return &eventAnswerError{http.StatusBadRequest, fmt.Sprintf("read the body: %v", err)}
	}
	ev, err := events.Read(ctx, r.Header, body)
	if err != nil {
		return &eventAnswerError{http.StatusBadRequest, err.Error()}
	}
	evctx, err := events.Context(ev)
	if err != nil {
		return &eventAnswerError{http.StatusBadRequest, err.Error()}
	}
	if et.Spec.Filter != "" {
		ok, err := t.cond.EvalIf(ctx, et.Spec.Filter, map[string]any{"context": map[string]any{"event": evctx}})
		switch {
		case err != nil && errors.Is(err, context.Canceled):
			return err
		case err != nil:
			// As the server: an event the filter cannot be decided for is not selected.
			writeEventJSON(w, http.StatusOK, eventIgnored{Reason: "the filter cannot be decided for this event: " + err.Error()})
			return nil //nolint:nilerr // an answer, not a failure, as said above
		case !ok:
			writeEventJSON(w, http.StatusOK, eventIgnored{Reason: "the filter is false for this event"})
			return nil
		}
	}
	run, err := eventRun(&et, ev.Source(), ev.ID(), evctx)
	if err != nil {
		return &eventAnswerError{http.StatusBadRequest, fmt.Sprintf("WorkflowEventTrigger %s: spec.runTemplate.spec.%v", key, err)}
	}
	if err := controllerutil.SetControllerReference(&et, run, t.c.direct.Scheme()); err != nil {
		return err
	}
	err = t.c.direct.Create(ctx, run)
	switch {
	case apierrors.IsAlreadyExists(err):
		// A repeated delivery: answered as the first was.
	case err != nil:
		if apierrors.IsInvalid(err) {
			return &eventAnswerError{http.StatusBadRequest, err.Error()}
		}
		return fmt.Errorf("WorkflowEventTrigger %s: create run %s: %w", key, run.Name, err)
	default:
		t.c.log.Info("WorkflowEventTrigger started a run", "trigger", key, "run", run.Name, "source", ev.Source(), "id", ev.ID())
	}
	writeEventJSON(w, http.StatusAccepted, eventRunRef{Namespace: run.Namespace, Name: run.Name})
	return nil
}

// authenticate checks the request's bearer token against the trigger's Secret; a trigger
// without secretRef accepts nobody.
func (t *eventTriggers) authenticate(ctx context.Context, r *http.Request, et *v1alpha1.WorkflowEventTrigger) error {
	denied := &eventAnswerError{http.StatusUnauthorized, "want Authorization: Bearer with the token of the trigger's spec.secretRef"}
	ref := et.Spec.SecretRef
	if ref == nil {
		return &eventAnswerError{http.StatusUnauthorized, "the WorkflowEventTrigger has no spec.secretRef: it accepts no events"}
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return denied
	}
	var s corev1.Secret
	if err := t.c.direct.Get(ctx, client.ObjectKey{Namespace: et.Namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return denied
		}
		return fmt.Errorf("read the Secret of spec.secretRef: %w", err)
	}
	want, ok := s.Data[ref.Key]
	if !ok || len(want) == 0 || subtle.ConstantTimeCompare(want, []byte(token)) != 1 {
		return denied
	}
	return nil
}

// eventIgnored answers an event the trigger's filter did not select, as the server does.
type eventIgnored struct {
	// Matched is false: no run was started.
	Matched bool `json:"matched"`
	// Reason says why.
	Reason string `json:"reason"`
}

// eventRunRef answers an event that started a run (or repeated one that did).
type eventRunRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// eventRun makes the WorkflowRun of an event: the run template with the trigger's label (and
// its shard's), event in its spec.context, named after the trigger and the event's source and
// id.
func eventRun(et *v1alpha1.WorkflowEventTrigger, source, id string, evctx map[string]any) (*v1alpha1.WorkflowRun, error) {
	tpl := et.Spec.RunTemplate.DeepCopy()
	sum := sha256.Sum256([]byte(source + "\x00" + id))
	prefix := et.Name
	if len(prefix) > maxEventTriggerPrefix {
		prefix = strings.TrimRight(prefix[:maxEventTriggerPrefix], "-.")
	}
	run := &v1alpha1.WorkflowRun{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   et.Namespace,
			Name:        prefix + "-" + hex.EncodeToString(sum[:5]),
			Labels:      tpl.Metadata.Labels,
			Annotations: tpl.Metadata.Annotations,
		},
		Spec: tpl.Spec,
	}
	if run.Labels == nil {
		run.Labels = map[string]string{}
	}
	run.Labels[v1alpha1.LabelEventTrigger] = et.Name
	if shard, ok := et.Labels[ShardLabel]; ok {
		run.Labels[ShardLabel] = shard
	}
	c := map[string]any{}
	if run.Spec.Context != nil && len(run.Spec.Context.Raw) > 0 && string(run.Spec.Context.Raw) != "null" {
		if err := json.Unmarshal(run.Spec.Context.Raw, &c); err != nil {
			return nil, fmt.Errorf("context must be an object of keys for the steps' CUE context: %w", err)
		}
	}
	c["event"] = evctx
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	run.Spec.Context = &runtime.RawExtension{Raw: raw}
	return run, nil
}

// writeEventJSON writes v as a JSON answer.
func writeEventJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// everyReplica is a manager runnable that runs on every replica, leader or not.
type everyReplica func(ctx context.Context) error

// Start implements manager.Runnable.
func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection implements manager.LeaderElectionRunnable: false.
func (everyReplica) NeedLeaderElection() bool { return false }
