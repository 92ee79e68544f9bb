package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"k8s.io/apimachinery/pkg/util/validation/field"
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
	ev, err := readCloudEvent(r.Context(), r.Header, body)
	if err != nil {
		return err
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

// readCloudEvent reads a CloudEvent from an HTTP request in structured mode (Content-Type
// application/cloudevents+json) or binary mode (ce-* headers), and checks its required
// attributes; a bad event is a 400 saying what is wrong.
func readCloudEvent(ctx context.Context, h http.Header, body []byte) (*cloudevents.Event, error) {
	msg := cehttp.NewMessage(h, io.NopCloser(bytes.NewReader(body)))
	if msg.ReadEncoding() == binding.EncodingUnknown {
		return nil, errorf(http.StatusBadRequest, "not a CloudEvent: want Content-Type: application/cloudevents+json (structured mode) or ce-specversion, ce-id, ce-source and ce-type headers (binary mode)")
	}
	ev, err := binding.ToEvent(ctx, msg)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "not a valid CloudEvent: %v", err)
	}
	if err := ev.Validate(); err != nil {
		return nil, errorf(http.StatusBadRequest, "not a valid CloudEvent: %v", err)
	}
	return ev, nil
}

// eventContext is the event as context.event: its attributes by their CloudEvents names, its
// extensions, and data (decoded when it is JSON, else a string).
func eventContext(ev *cloudevents.Event) (map[string]any, error) {
	out := map[string]any{
		"specversion": ev.SpecVersion(),
		"id":          ev.ID(),
		"source":      ev.Source(),
		"type":        ev.Type(),
	}
	if v := ev.Subject(); v != "" {
		out["subject"] = v
	}
	if v := ev.DataContentType(); v != "" {
		out["datacontenttype"] = v
	}
	if v := ev.DataSchema(); v != "" {
		out["dataschema"] = v
	}
	if t := ev.Time(); !t.IsZero() {
		out["time"] = t.UTC().Format(time.RFC3339Nano)
	}
	for k, v := range ev.Extensions() {
		if _, ok := out[k]; !ok {
			out[k] = fmt.Sprint(v)
		}
	}
	if data := ev.Data(); len(data) > 0 {
		var v any
		if json.Valid(data) {
			if err := json.Unmarshal(data, &v); err != nil {
				return nil, errorf(http.StatusBadRequest, "the event's data: %v", err)
			}
		} else {
			v = string(data)
		}
		out["data"] = v
	}
	return out, nil
}

// startFromEvent starts the run of an event that passes t's filter (202 with the run), or
// answers 200 with why it started none.
func (s *Server) startFromEvent(w http.ResponseWriter, r *http.Request, t *trigger, ev *cloudevents.Event) error {
	evctx, err := eventContext(ev)
	if err != nil {
		return err
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
