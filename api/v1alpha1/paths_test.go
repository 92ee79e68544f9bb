package v1alpha1

import (
	"reflect"
	"testing"
)

func TestSetDottedPath(t *testing.T) {
	m := map[string]any{"data": map[string]any{"keep": 1}, "flat": "x"}
	SetDottedPath(m, "data.version", "v2")
	SetDottedPath(m, "flat.inner", true) // a scalar on the way is replaced by a map
	SetDottedPath(m, "top", 3)
	want := map[string]any{
		"data": map[string]any{"keep": 1, "version": "v2"},
		"flat": map[string]any{"inner": true},
		"top":  3,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
}
