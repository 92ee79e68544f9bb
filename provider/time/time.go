// Package time supplies the CUE package vela/time: #DateToTimestamp and #TimestampToDate convert
// between a date written with a Go time layout (RFC 3339 by default) and Unix seconds, in UTC.
package time

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

//go:embed time.cue
var source string

// Options configure the provider; the zero value works. There is nothing to configure yet.
type Options struct{}

// Register adds the package (import path "vela/time") and its actions time.timestamp and
// time.date to r.
func Register(r *step.Registry, _ Options) {
	r.AddPackage(step.Package{Path: "vela/time", Source: source})
	r.Register(step.Action{Provider: "time", Do: "timestamp", Local: step.Always, Run: dateToTimestamp, LegacyOutputs: []string{"timestamp"}})
	r.Register(step.Action{Provider: "time", Do: "date", Local: step.Always, Run: timestampToDate, LegacyOutputs: []string{"date"}})
}

// dateToTimestamp runs #DateToTimestamp.
func dateToTimestamp(_ context.Context, call *step.Call) (any, error) {
	var in struct {
		Date   string `json:"date"`
		Layout string `json:"layout"`
	}
	if err := call.Decode(&in); err != nil {
		return nil, terminal("#DateToTimestamp", err)
	}
	if in.Date == "" {
		return nil, terminal("#DateToTimestamp", errors.New("parameter date is empty"))
	}
	layout := in.Layout
	if layout == "" {
		layout = time.RFC3339
	}
	t, err := time.Parse(layout, in.Date)
	if err != nil {
		return nil, terminal("#DateToTimestamp", fmt.Errorf("parameter date %q does not match layout %q: %w", in.Date, layout, err))
	}
	return map[string]any{"timestamp": t.Unix()}, nil
}

// timestampToDate runs #TimestampToDate.
func timestampToDate(_ context.Context, call *step.Call) (any, error) {
	var in struct {
		Timestamp *int64 `json:"timestamp"`
		Layout    string `json:"layout"`
	}
	if err := call.Decode(&in); err != nil {
		return nil, terminal("#TimestampToDate", err)
	}
	if in.Timestamp == nil {
		return nil, terminal("#TimestampToDate", errors.New("parameter timestamp is required"))
	}
	layout := in.Layout
	if layout == "" {
		layout = time.RFC3339
	}
	return map[string]any{"date": time.Unix(*in.Timestamp, 0).UTC().Format(layout)}, nil
}

func terminal(action string, err error) error {
	return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/time: %s: %w", action, err))
}
