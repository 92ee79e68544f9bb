package v1alpha1

import "strings"

// SetDottedPath sets value at a dotted path such as "data.version" in a tree of maps, creating
// the maps on the way: how an input's parameterKey addresses a step's properties.
func SetDottedPath(m map[string]any, path string, value any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
}
