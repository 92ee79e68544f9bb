package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stepflow/stepflow/api/v1alpha1"
)

// The seed corpora are in testdata/fuzz: the examples of testdata and the documents of the tests.

// FuzzDecode checks that Decode never panics, returns either objects or a sorted list of located
// problems, and that the JSON form of what it decodes decodes to the same JSON form.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode("fuzz.yaml", data)
		if err != nil {
			if objs != nil {
				t.Fatalf("objects along with the error %v", err)
			}
			var list Errors
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v (%T) is not a list of problems", err, err)
			}
			for _, e := range list {
				if e.File != "fuzz.yaml" || e.Msg == "" || e.Line < 0 || e.Column < 0 {
					t.Fatalf("problem %#v is not located in the file", e)
				}
			}
			if !slices.IsSortedFunc(list, func(a, b *Error) int { return a.Line - b.Line }) {
				t.Fatalf("problems are not sorted:\n%v", list)
			}
			return
		}
		var all []any
		for _, o := range objs.Runs {
			all = append(all, o)
		}
		for _, o := range objs.Workflows {
			all = append(all, o)
		}
		for _, o := range objs.Definitions {
			all = append(all, o)
		}
		for _, obj := range all {
			if _, _, _, ok := objs.Positions.Lookup(obj, ""); !ok {
				t.Fatalf("decoded object %#v has no position", obj)
			}
			first := jsonForm(t, obj)
			if !readsBackAsYAML(first) {
				continue
			}
			again, err := Decode("again.json", first)
			if err != nil {
				t.Fatalf("the JSON form\n%s\ndoes not decode: %v", first, err)
			}
			var second []byte
			switch {
			case len(again.Runs) == 1:
				second = jsonForm(t, again.Runs[0])
			case len(again.Workflows) == 1:
				second = jsonForm(t, again.Workflows[0])
			case len(again.Definitions) == 1:
				second = jsonForm(t, again.Definitions[0])
			default:
				t.Fatalf("the JSON form\n%s\ndecodes to %+v", first, again)
			}
			if !bytes.Equal(first, second) {
				t.Fatalf("the JSON form\n%s\ndecodes to\n%s", first, second)
			}
		}
	})
}

func jsonForm(t *testing.T, obj any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		t.Fatalf("encoding %#v: %v", obj, err)
	}
	return b.Bytes()
}

// readsBackAsYAML reports whether JSON text keeps its meaning when read as YAML: JSON allows in
// strings a few characters that YAML refuses (DEL, C1 controls, a BOM) or reads as a line break
// (NEL), which stepflow, reading JSON as YAML, does not accept either.
func readsBackAsYAML(data []byte) bool {
	for _, r := range string(data) {
		if r == 0x85 || !yamlPrintable(r) {
			return false
		}
	}
	return true
}

// FuzzValidate checks that validating a decoded run or Workflow never panics nor changes it, gives
// the same problems twice, and that Explain locates every problem in the file.
func FuzzValidate(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode("fuzz.yaml", data)
		if err != nil {
			return
		}
		check := func(obj any, validate func() []string, explain func() Errors) {
			copyOf := reflect.ValueOf(obj).MethodByName("DeepCopy").Call(nil)[0].Interface()
			first := validate()
			if !reflect.DeepEqual(obj, copyOf) {
				t.Fatalf("validation changed %#v", obj)
			}
			if second := validate(); !slices.Equal(first, second) {
				t.Fatalf("validating twice gives\n%q\nthen\n%q", first, second)
			}
			located := explain()
			if len(located) != len(first) {
				t.Fatalf("%d problems explained as %d", len(first), len(located))
			}
			for _, e := range located {
				if e.File != "fuzz.yaml" || e.Line < 1 || e.Column < 1 || e.Path == "" {
					t.Fatalf("problem %#v is not located", e)
				}
			}
		}
		for _, run := range objs.Runs {
			check(run,
				func() []string { return texts(v1alpha1.ValidateWorkflowRun(run)) },
				func() Errors { return objs.Explain(run, v1alpha1.ValidateWorkflowRun(run)) })
		}
		for _, wf := range objs.Workflows {
			check(wf,
				func() []string { return texts(v1alpha1.ValidateWorkflow(wf)) },
				func() Errors { return objs.Explain(wf, v1alpha1.ValidateWorkflow(wf)) })
		}
	})
}

func texts(errs field.ErrorList) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}
