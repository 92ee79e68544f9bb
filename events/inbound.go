package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// Read reads a CloudEvent sent over HTTP in structured mode (Content-Type
// application/cloudevents+json) or binary mode (ce-* headers), and checks its required
// attributes. Every error it returns is the sender's fault (a 400) and says what is wrong.
func Read(ctx context.Context, h http.Header, body []byte) (*cloudevents.Event, error) {
	msg := cehttp.NewMessage(h, io.NopCloser(bytes.NewReader(body)))
	if msg.ReadEncoding() == binding.EncodingUnknown {
		return nil, errors.New("not a CloudEvent: want Content-Type: application/cloudevents+json (structured mode) or ce-specversion, ce-id, ce-source and ce-type headers (binary mode)")
	}
	ev, err := binding.ToEvent(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("not a valid CloudEvent: %w", err)
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("not a valid CloudEvent: %w", err)
	}
	return ev, nil
}

// Context is the event as a run's context.event: its attributes by their CloudEvents names,
// its extensions, and data (decoded when it is JSON, else a string). Its error, data that
// cannot be decoded, is the sender's fault.
func Context(ev *cloudevents.Event) (map[string]any, error) {
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
				return nil, fmt.Errorf("the event's data: %w", err)
			}
		} else {
			v = string(data)
		}
		out["data"] = v
	}
	return out, nil
}
