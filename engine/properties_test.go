package engine

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// A step's properties reach the runner as they are written, unless they are not an object.
func TestPropertiesJSONPassesThemAsWritten(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{``, `{}`},
		{`null`, `{}`},
		{" \n{\"a\": 1.0, \"b\": 3} ", `{"a": 1.0, "b": 3}`},
	} {
		raw, want := c.raw, c.want
		got, err := propertiesJSON(&runtime.RawExtension{Raw: []byte(raw)})
		if err != nil || string(got) != want {
			t.Errorf("%q: %s, %v; want %s", raw, got, err, want)
		}
	}
	if got, err := propertiesJSON(nil); err != nil || string(got) != `{}` {
		t.Errorf("nil: %s, %v", got, err)
	}
	for raw, want := range map[string]string{
		`[1]`:       "cannot unmarshal array",
		`"x"`:       "cannot unmarshal string",
		`{"a": 1`:   "unexpected end of JSON input",
		`{"a": 1}}`: "invalid character '}' after top-level value",
	} {
		if _, err := propertiesJSON(&runtime.RawExtension{Raw: []byte(raw)}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
}

// Inputs with a parameterKey are set in the properties at that path, replacing what is there;
// the properties' numbers stay as they are written.
func TestFillInputsKeepsNumbers(t *testing.T) {
	props := json.RawMessage(`{"replicas": 3, "ratio": 2.0, "big": 12345678901234567890, "image": {"name": "app", "tag": "old"}, "keep": [1, 1e3]}`)
	items := []v1alpha1.InputItem{{From: "tag", ParameterKey: "image.tag"}, {From: "n", ParameterKey: "count"},
		{From: "cfg", ParameterKey: "deep.er.cfg"}, {From: "unused"}}
	inputs := map[string]any{"tag": "v2", "n": float64(7), "cfg": map[string]any{"half": 0.5}, "unused": "x"}
	got, err := fillInputs(props, items, inputs)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(got))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"replicas": json.Number("3"), "ratio": json.Number("2.0"), "big": json.Number("12345678901234567890"),
		"image": map[string]any{"name": "app", "tag": "v2"}, "keep": []any{json.Number("1"), json.Number("1e3")},
		"count": json.Number("7"), "deep": map[string]any{"er": map[string]any{"cfg": map[string]any{"half": json.Number("0.5")}}},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %s", got)
	}
}

// The properties given are a copy: the run's may change while the step is evaluated.
func TestPropertiesJSONIsACopy(t *testing.T) {
	p := &runtime.RawExtension{Raw: []byte(`{"a": 1}`)}
	got, err := propertiesJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	copy(p.Raw, `{"b": 2}`)
	if string(got) != `{"a": 1}` {
		t.Errorf("got %s after the run's properties changed", got)
	}
}
