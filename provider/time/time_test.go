package time_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"

	"github.com/stepflow/stepflow/engine"
	veltime "github.com/stepflow/stepflow/provider/time"
	"github.com/stepflow/stepflow/step"
)

func registry() *step.Registry {
	r := step.NewRegistry()
	veltime.Register(r, veltime.Options{})
	return r
}

// run calls time.<do> with params and returns its result in JSON form.
func run(t *testing.T, do string, params map[string]any) (map[string]any, error) {
	t.Helper()
	a, ok := registry().Action("time", do)
	if !ok {
		t.Fatalf("action time.%s is not registered", do)
	}
	out, err := a.Run(context.Background(), &step.Call{Params: params, Path: "t", Step: "s"})
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res, nil
}

func TestDateToTimestamp(t *testing.T) {
	for _, tc := range []struct {
		date, layout string
		want         float64
	}{
		{"2023-11-14T22:13:20Z", "", 1_700_000_000},
		{"2023-11-15T06:13:20+08:00", "", 1_700_000_000},
		{"2023-11-14 22:13:20", "2006-01-02 15:04:05", 1_700_000_000}, // no zone: UTC
		{"1970-01-01", "2006-01-02", 0},
		{"1969-12-31T23:59:59Z", "", -1},
	} {
		res, err := run(t, "timestamp", map[string]any{"date": tc.date, "layout": tc.layout})
		if err != nil {
			t.Errorf("%q with layout %q: %v", tc.date, tc.layout, err)
			continue
		}
		if want := map[string]any{"timestamp": tc.want}; !reflect.DeepEqual(res, want) {
			t.Errorf("%q with layout %q: got %v, want %v", tc.date, tc.layout, res, want)
		}
	}
}

func TestTimestampToDate(t *testing.T) {
	for _, tc := range []struct {
		timestamp any
		layout    string
		want      string
	}{
		{1_700_000_000, "", "2023-11-14T22:13:20Z"},
		{float64(1_700_000_000), "", "2023-11-14T22:13:20Z"}, // a JSON number
		{int64(0), "2006-01-02", "1970-01-01"},
		{-1, "", "1969-12-31T23:59:59Z"},
		{1_700_000_000, "Jan 2, 2006 at 3:04pm (MST)", "Nov 14, 2023 at 10:13pm (UTC)"},
	} {
		res, err := run(t, "date", map[string]any{"timestamp": tc.timestamp, "layout": tc.layout})
		if err != nil {
			t.Errorf("%v with layout %q: %v", tc.timestamp, tc.layout, err)
			continue
		}
		if want := map[string]any{"date": tc.want}; !reflect.DeepEqual(res, want) {
			t.Errorf("%v with layout %q: got %v, want %v", tc.timestamp, tc.layout, res, want)
		}
	}
}

func TestBadInputNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		do     string
		params map[string]any
		want   string
	}{
		{"timestamp", map[string]any{"date": ""}, "parameter date is empty"},
		{"timestamp", map[string]any{}, "parameter date is empty"},
		{"timestamp", map[string]any{"date": "yesterday"}, `parameter date "yesterday" does not match layout`},
		{"timestamp", map[string]any{"date": "2023-11-14", "layout": "15:04"}, `parameter date "2023-11-14" does not match layout "15:04"`},
		{"timestamp", map[string]any{"date": 12}, "parameter date"},
		{"date", map[string]any{}, "parameter timestamp is required"},
		{"date", map[string]any{"timestamp": 1.5}, "parameter timestamp"},
		{"date", map[string]any{"timestamp": "1700000000"}, "parameter timestamp"},
	} {
		_, err := run(t, tc.do, tc.params)
		if _, ok := errors.AsType[*engine.TerminalError](err); !ok {
			t.Errorf("%s %v: got %v, want a terminal error", tc.do, tc.params, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: error %q should say %q", tc.do, tc.params, err, tc.want)
		}
	}
}

func TestRegistration(t *testing.T) {
	r := registry()
	for do, output := range map[string]string{"timestamp": "timestamp", "date": "date"} {
		a, ok := r.Action("time", do)
		if !ok {
			t.Fatalf("time.%s is not registered", do)
		}
		if a.SideEffect != nil || a.LegacyResult != "" || !reflect.DeepEqual(a.LegacyOutputs, []string{output}) {
			t.Errorf("time.%s: legacy result %q outputs %v, want \"\" [%s] and no side effect", do, a.LegacyResult, a.LegacyOutputs, output)
		}
	}
}

func TestCUEPackage(t *testing.T) {
	p, ok := registry().Package("vela/time")
	if !ok {
		t.Fatal("package vela/time is not supplied")
	}
	ctx := cuecontext.New()
	pkg := ctx.CompileString(p.Source, cue.Filename("vela/time"))
	if err := pkg.Err(); err != nil {
		t.Fatalf("vela/time does not compile: %v", err)
	}
	use := func(expr string) (cue.Value, error) {
		v := ctx.CompileString("x: "+expr, cue.Scope(pkg))
		x := v.LookupPath(cue.ParsePath("x"))
		if v.Err() != nil {
			return x, v.Err()
		}
		return x, x.Validate()
	}
	x, err := use(`#DateToTimestamp & {$params: date: "2023-11-14T22:13:20Z", $returns: timestamp: 1700000000}`)
	if err != nil {
		t.Fatal(err)
	}
	if layout, _ := x.LookupPath(cue.ParsePath("$params.layout")).String(); layout != "" {
		t.Errorf("layout defaults to %q, want \"\"", layout)
	}
	if _, err := use(`#TimestampToDate & {$params: {timestamp: 1700000000, layout: "2006"}, $returns: date: "2023"}`); err != nil {
		t.Error(err)
	}
	if _, err := use(`#TimestampToDate & {$params: timestamp: 1.5}`); err == nil {
		t.Error("#TimestampToDate accepted a fractional timestamp")
	}
	for def, do := range map[string]string{"DateToTimestamp": "timestamp", "TimestampToDate": "date"} {
		if got, _ := pkg.LookupPath(cue.MakePath(cue.Def(def), cue.Def("do"))).String(); got != do {
			t.Errorf("#%s.#do = %q, want %q", def, got, do)
		}
		if got, _ := pkg.LookupPath(cue.MakePath(cue.Def(def), cue.Def("provider"))).String(); got != "time" {
			t.Errorf("#%s.#provider = %q, want time", def, got)
		}
	}
}
