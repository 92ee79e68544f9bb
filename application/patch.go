package application

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	jsonpatch "github.com/evanphx/json-patch/v5"
)

// The patch strategies a comment before a field of a trait's `patch` selects, as KubeVela
// writes them:
//
//	// +patchKey=name              a list of objects is merged by the key: an element of the
//	                               patch with the key of an element of the workload is merged
//	                               into it, the others are appended
//	// +patchStrategy=retainKeys   the object keeps only the fields the patch has, merged, the
//	                               patch's values replacing the workload's
//	// +patchStrategy=replace      the patch's value replaces the workload's
//	// +patchStrategy=jsonMergePatch  (on `patch` itself) the patch is an RFC 7386 merge patch
//	// +patchStrategy=jsonPatch       (on `patch` itself) `patch.operations` is an RFC 6902 patch
//
// Without one, the patch is unified with the workload as CUE would: objects merged field by
// field, lists of the same length element by element, equal values kept, a value the workload
// took as a default replaced, and any other difference a conflict.
const (
	strategyRetainKeys     = "retainKeys"
	strategyReplace        = "replace"
	strategyJSONMergePatch = "jsonMergePatch"
	strategyJSONPatch      = "jsonPatch"
)

// strategy is what the comments before a field say.
type strategy struct {
	patchKey string
	strategy string
}

// strategyOf reads the +patchKey and +patchStrategy comments of a field.
func strategyOf(v cue.Value) strategy {
	var s strategy
	for _, cg := range v.Doc() {
		for line := range strings.SplitSeq(cg.Text(), "\n") {
			line = strings.TrimSpace(line)
			if k, ok := strings.CutPrefix(line, "+patchKey="); ok {
				s.patchKey = strings.TrimSpace(k)
			}
			if k, ok := strings.CutPrefix(line, "+patchStrategy="); ok {
				s.strategy = strings.TrimSpace(k)
			}
		}
	}
	return s
}

// applyPatch applies a trait's `patch` to the workload. defaults holds the paths of the
// workload's values that are defaults; those a patch changes are removed from it.
//
// top is the strategy written before the template's top-level `patch`, which CUE takes for the
// file's comment when `patch` is the template's first field.
func applyPatch(workload map[string]any, patch cue.Value, top string, defaults map[string]bool) (map[string]any, error) {
	if err := patch.Validate(cue.Concrete(true)); err != nil {
		return nil, fmt.Errorf("patch: %w", describe(err))
	}
	s := strategyOf(patch)
	if s.strategy == "" {
		s.strategy = top
	}
	switch s.strategy {
	case strategyJSONMergePatch:
		return jsonPatched(workload, patch, false)
	case strategyJSONPatch:
		return jsonPatched(workload, patch.LookupPath(cue.ParsePath("operations")), true)
	}
	p := patcher{defaults: defaults}
	out, err := p.merge(workload, patch, "")
	if err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	obj, ok := out.(map[string]any)
	if !ok {
		return nil, errors.New("patch: the patched workload is not an object")
	}
	return obj, nil
}

// jsonPatched applies an RFC 7386 merge patch, or an RFC 6902 patch when ops.
func jsonPatched(workload map[string]any, patch cue.Value, ops bool) (map[string]any, error) {
	if !patch.Exists() {
		return nil, errors.New("patch: a jsonPatch needs patch.operations")
	}
	doc, err := json.Marshal(workload)
	if err != nil {
		return nil, err
	}
	pb, err := patch.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("patch: %w", describe(err))
	}
	var out []byte
	if ops {
		p, err := jsonpatch.DecodePatch(pb)
		if err != nil {
			return nil, fmt.Errorf("patch.operations: %w", err)
		}
		out, err = p.Apply(doc)
		if err != nil {
			return nil, fmt.Errorf("patch.operations: %w", err)
		}
	} else if out, err = jsonpatch.MergePatch(doc, pb); err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	x, err := decodeJSON(out)
	if err != nil {
		return nil, err
	}
	obj, ok := x.(map[string]any)
	if !ok {
		return nil, errors.New("patch: the patched workload is not an object")
	}
	return obj, nil
}

// topStrategy is the +patchStrategy of the comment lines right before the template's
// top-level `patch:` field, or "".
func topStrategy(tmpl string) string {
	lines := strings.Split(tmpl, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "patch:") && !strings.HasPrefix(line, "patch :") {
			continue
		}
		for j := i - 1; j >= 0; j-- {
			c, ok := strings.CutPrefix(strings.TrimSpace(lines[j]), "//")
			if !ok {
				break
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(c), "+patchStrategy="); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	return ""
}

// patcher merges a patch into a workload, following the strategies of the patch's comments.
type patcher struct {
	defaults map[string]bool
	// override is set under +patchStrategy=retainKeys: the patch's values replace the
	// workload's, as in a Kubernetes strategic merge patch.
	override bool
}

// merge returns base with p merged in; path is where base is, for errors and defaults.
func (m patcher) merge(base any, p cue.Value, path string) (any, error) {
	s := strategyOf(p)
	if s.strategy == strategyReplace || base == nil {
		m.forget(path)
		return plainValue(p)
	}
	switch p.Kind() {
	case cue.StructKind:
		b, ok := base.(map[string]any)
		if !ok {
			return nil, conflict(path, base, p)
		}
		out := map[string]any{}
		if s.strategy == strategyRetainKeys {
			m.override = true
		} else {
			maps.Copy(out, b)
		}
		it, err := p.Fields()
		if err != nil {
			return nil, describe(err)
		}
		for it.Next() {
			k := it.Selector().Unquoted()
			v, err := m.merge(b[k], it.Value(), join(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	case cue.ListKind:
		b, ok := base.([]any)
		if !ok {
			return nil, conflict(path, base, p)
		}
		if s.patchKey != "" {
			return m.mergeByKey(b, p, path, s.patchKey)
		}
		items, err := elements(p)
		if err != nil {
			return nil, err
		}
		if len(items) != len(b) {
			return nil, fmt.Errorf("%s: a list of %d items conflicts with the workload's %d (a +patchKey comment merges lists by key)",
				orRoot(path), len(items), len(b))
		}
		out := make([]any, len(b))
		for i, item := range items {
			if out[i], err = m.merge(b[i], item, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		v, err := plainValue(p)
		if err != nil {
			return nil, err
		}
		if reflect.DeepEqual(v, base) {
			return base, nil
		}
		if m.defaults[path] || m.override {
			m.forget(path)
			return v, nil
		}
		return nil, conflict(path, base, p)
	}
}

// mergeByKey merges the elements of the patch list p into b by the value of their field key.
func (m patcher) mergeByKey(b []any, p cue.Value, path, key string) (any, error) {
	items, err := elements(p)
	if err != nil {
		return nil, err
	}
	out := append([]any(nil), b...)
	for _, item := range items {
		kv := item.LookupPath(cue.MakePath(cue.Str(key)))
		if !kv.Exists() {
			return nil, fmt.Errorf("%s: an element of the patch has no %s, the list's +patchKey", orRoot(path), key)
		}
		want, err := plainValue(kv)
		if err != nil {
			return nil, err
		}
		i := -1
		for j, e := range out {
			if em, ok := e.(map[string]any); ok && reflect.DeepEqual(em[key], want) {
				i = j
				break
			}
		}
		if i < 0 {
			v, err := plainValue(item)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			continue
		}
		if out[i], err = m.merge(out[i], item, path+"["+strconv.Itoa(i)+"]"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// forget drops the defaults at and under path: the patch set them.
func (m patcher) forget(path string) {
	for p := range m.defaults {
		if p == path || strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[") || path == "" {
			delete(m.defaults, p)
		}
	}
}

// elements lists the items of a list value.
func elements(p cue.Value) ([]cue.Value, error) {
	it, err := p.List()
	if err != nil {
		return nil, describe(err)
	}
	var out []cue.Value
	for it.Next() {
		out = append(out, it.Value())
	}
	return out, nil
}

// conflict is the error of a patch value that cannot unify with the workload's.
func conflict(path string, base any, p cue.Value) error {
	b, _ := json.Marshal(base)
	pb, _ := p.MarshalJSON()
	return fmt.Errorf("%s: conflicting values %s (workload) and %s (patch)", orRoot(path), b, pb)
}

func orRoot(path string) string {
	if path == "" {
		return "(the workload)"
	}
	return path
}
