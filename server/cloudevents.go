package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"net/http"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/events"
)

// triggerCloudEvents is the trigger type that starts a run on a CloudEvent POSTed to its URL.
const triggerCloudEvents = "cloudevents"

// eventTTL is how long a CloudEvent's (source, id) is remembered, so that its redelivery starts
// nothing.
const eventTTL = 24 * time.Hour

// eventIgnored answers a CloudEvent the trigger's filter did not select.
type eventIgnored struct {
	// Matched is false: no run was started.
	Matched bool `json:"matched"`
	// Reason says why: the filter was false, or could not be decided for this event.
	Reason string `json:"reason"`
}

// cloudEvent starts a run of a cloudevents trigger's template with the event (its attributes
// and data) as context.event, when the trigger's filter selects it. A redelivered event (same
// source and id) is answered as its first delivery was.
func (s *Server) cloudEvent(w http.ResponseWriter, r *http.Request, t *trigger, body []byte) error {
	ev, err := events.Read(r.Context(), r.Header, body)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	sum := sha256.Sum256([]byte(ev.Source() + "\x00" + ev.ID()))
	delivery := "ce-" + hex.EncodeToString(sum[:])
	first, version, err := s.claimDelivery(r.Context(), t.ID, delivery, eventTTL)
	if err != nil {
		return err
	}
	if first != nil {
		send(w, first.Status, first.Body)
		return nil
	}
	a := newAnswer()
	if err := s.startFromEvent(a, r, t, ev); err != nil {
		s.writeError(a, r, err)
	}
	s.answerDelivery(r.Context(), t.ID, delivery, version, eventTTL, a)
	send(w, a.status, a.body.Bytes())
	return nil
}

// startFromEvent starts the run of an event that passes t's filter (202 with the run), or
// answers 200 with why it started none.
func (s *Server) startFromEvent(w http.ResponseWriter, r *http.Request, t *trigger, ev *cloudevents.Event) error {
	evctx, err := events.Context(ev)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	ctx := maps.Clone(t.Context)
	if ctx == nil {
		ctx = map[string]any{}
	}
	ctx["event"] = evctx
	if t.Filter != "" {
		ok, err := s.runner.EvalIf(r.Context(), t.Filter, map[string]any{"context": map[string]any{"event": evctx}})
		switch {
		case err != nil && errors.Is(err, context.Canceled):
			return err
		case err != nil:
			// An event the filter cannot be decided for (it lacks a field the filter reads) is
			// not selected: an answer, not a failure.
			writeJSON(w, http.StatusOK, eventIgnored{Reason: "the filter cannot be decided for this event: " + err.Error()})
			return nil //nolint:nilerr // as said above
		case !ok:
			writeJSON(w, http.StatusOK, eventIgnored{Reason: "the filter is false for this event"})
			return nil
		}
	}
	obj, err := s.templateRunObject(r.Context(), &templateRun{Template: t.Template, Namespace: t.Namespace, Context: ctx}, field.NewPath("context"))
	if err != nil {
		return err
	}
	run, err := s.createRun(r.Context(), obj, nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, runRef{Namespace: run.Object.Namespace, Name: run.Object.Name})
	return nil
}
