package step_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

// takeRunner runs step type "take", whose parameter is typed by parameter, and whose action
// t.take passes its $params, $take, to got, decoded into the struct into points at.
func takeRunner(t *testing.T, parameter, take string, into func() any, got func(c *step.Call, v any)) *step.Runner {
	t.Helper()
	reg := step.NewRegistry()
	reg.Register(step.Action{Provider: "t", Do: "take", Run: func(_ context.Context, c *step.Call) (any, error) {
		v := into()
		if err := c.Decode(v); err != nil {
			return nil, err
		}
		got(c, v)
		return nil, nil
	}})
	return step.NewRunner(step.Options{Registry: reg, Definitions: defs{"take": "parameter: " + parameter + `
take: {
	#provider: "t"
	#do:       "take"
	$params: ` + take + `
}`}})
}

// rawRequest is a StepRequest for a step of type typ whose properties are written as raw.
func rawRequest(typ, raw string, outputs ...string) *engine.StepRequest {
	req := request(typ, nil)
	req.Properties = json.RawMessage(raw)
	for _, o := range outputs {
		req.Step.Outputs = append(req.Step.Outputs, v1alpha1.OutputItem{Name: o, ValueFrom: "parameter." + o})
	}
	return req
}

// The properties' numbers are what CUE makes of JSON numbers: an integer is an int, however
// long, and a number with a fraction or an exponent is a float, 2.0 too (CUE writes it 2), with
// the digits written.
func TestPropertiesNumbersAreCUEs(t *testing.T) {
	type params struct {
		N   int   `json:"n"`
		Big int64 `json:"big"`
	}
	var got params
	r := takeRunner(t, `{n: int, big: int, f: float, e: number, list: [...int], s: string, x: float}`, `{n: parameter.n, big: parameter.big}`,
		func() any { return &params{} }, func(_ *step.Call, v any) { got = *v.(*params) })
	res := mustRun(t, r, rawRequest("take", `{"n": 3, "big": 1234567890123456789, "f": 2.0, "e": 1e3, "list": [1, -0], "s": "a<b", "x": 0.10000000000000000001}`,
		"n", "big", "f", "e", "list", "s", "x"))
	wantOutcome(t, res, engine.Succeeded, "")
	want := map[string]string{"n": `3`, "big": `1234567890123456789`, "f": `2`, "e": `1E+3`, "list": `[1,0]`, "s": `"a<b"`, "x": `0.10000000000000000001`}
	for name, w := range want {
		if o := string(res.Outputs[name]); o != w {
			t.Errorf("output %s = %s, want %s", name, o, w)
		}
	}
	// An integer past a float64's precision reaches the provider's struct as written.
	if got != (params{N: 3, Big: 1234567890123456789}) {
		t.Errorf("decoded %+v", got)
	}
}

// A whole number CUE makes a float, as a division does, still fits an int field: Call.Decode
// reads it as Params has it.
func TestDecodeTakesAWholeFloatForAnInt(t *testing.T) {
	type params struct {
		Half  int     `json:"half"`
		Ratio float64 `json:"ratio"`
		Name  string  `json:"name"`
	}
	var got params
	var p map[string]any
	r := takeRunner(t, `{n: int}`, `{half: parameter.n / 2, ratio: parameter.n / 4, name: "x"}`,
		func() any { return &params{} }, func(c *step.Call, v any) { got, p = *v.(*params), c.Params })
	wantOutcome(t, mustRun(t, r, rawRequest("take", `{"n": 6}`)), engine.Succeeded, "")
	if got != (params{Half: 3, Ratio: 1.5, Name: "x"}) {
		t.Errorf("decoded %+v", got)
	}
	if p["half"] != 3.0 || p["name"] != "x" {
		t.Errorf("Params %v", p)
	}
}

// Properties that are not a JSON object fail the step on its parameter.
func TestPropertiesNotAnObject(t *testing.T) {
	r := takeRunner(t, `{n: int}`, `{n: parameter.n}`, func() any { return &struct{}{} }, func(*step.Call, any) {})
	for raw, want := range map[string]string{
		`[1]`:               "properties: json: cannot unmarshal array",
		`[1.5]`:             "properties: json: cannot unmarshal array",
		`{"n": 1} {}`:       "properties: invalid character '{' after top-level value",
		`{"n": 1.5} {}`:     "properties: invalid character '{' after top-level value",
		`{"n": }`:           "properties: invalid character '}'",
		`{"n": 1.5, "m": }`: "properties: invalid character '}'",
	} {
		res := mustRun(t, r, rawRequest("take", raw))
		wantOutcome(t, res, engine.Failed, v1alpha1.ReasonParameter)
		if !strings.HasPrefix(res.Message, want) {
			t.Errorf("%s: message %q, want %q...", raw, res.Message, want)
		}
	}
	// No properties, or null, are an empty object: here, a parameter left without a value.
	for _, raw := range []string{``, ` `, `null`} {
		res := mustRun(t, r, rawRequest("take", raw))
		wantOutcome(t, res, engine.Failed, v1alpha1.ReasonParameter)
		if !strings.Contains(res.Message, "parameter.n: required, not set") {
			t.Errorf("%q: message %q", raw, res.Message)
		}
	}
}

// The legacy form's parameters, the action's own fields, are read into one JSON object too,
// whatever their labels.
func TestLegacyParametersDecode(t *testing.T) {
	type params struct {
		Key   string         `json:"key"`
		Value map[string]any `json:"value"`
	}
	var got params
	var p map[string]any
	reg := step.NewRegistry()
	reg.Register(step.Action{Provider: "t", Do: "legacy", LegacyOutputs: []string{"out"}, Run: func(_ context.Context, c *step.Call) (any, error) {
		if err := c.Decode(&got); err != nil {
			return nil, err
		}
		p = c.Params
		return map[string]any{"out": "done"}, nil
	}})
	r := step.NewRunner(step.Options{Registry: reg, Definitions: defs{"legacy": `
parameter: key: string
do: {
	#provider:    "t"
	#do:          "legacy"
	key:          parameter.key
	"say \"hi\"": "é"
	"clé":        "\u0000"
	value: {a: 1, b: [true, null]}
	out?: string
}`}})
	wantOutcome(t, mustRun(t, r, rawRequest("legacy", `{"key": "k"}`)), engine.Succeeded, "")
	if got.Key != "k" || got.Value["a"] != 1.0 || len(got.Value["b"].([]any)) != 2 {
		t.Errorf("decoded %+v", got)
	}
	if p[`say "hi"`] != "é" || p["clé"] != "\x00" || p["out"] != nil || len(p) != 4 {
		t.Errorf("Params %#v", p)
	}
}
