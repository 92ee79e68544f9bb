package manifest

import (
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Positions remembers, for each decoded object, the file it came from and the YAML it was decoded
// from, so that a field path can be turned into a line and column. Objects are recognised by
// pointer: a copy of a decoded object (DeepCopy) is not found.
type Positions struct {
	objects map[any]source
}

type source struct {
	file string
	root *yaml.Node
}

func (p *Positions) add(obj any, file string, root *yaml.Node) {
	if p.objects == nil {
		p.objects = map[any]source{}
	}
	p.objects[obj] = source{file: file, root: root}
}

// Lookup finds where the field at fieldPath (as field.Path prints it, for example
// spec.workflowSpec.steps[1].timeout, or "" for the object itself) of a decoded object is written.
// The position is that of the field's key, or of the list item for an index.
//
// ok reports whether the object is known and the whole path is written in its file. When the
// object is known but the path is not all written (a field left to its default, such as a step's
// filled-in name), file, line and col are those of the deepest enclosing field that is written.
func (p *Positions) Lookup(obj any, fieldPath string) (file string, line, col int, ok bool) {
	if p == nil || obj == nil || !reflect.TypeOf(obj).Comparable() {
		return "", 0, 0, false // not one of the decoded objects, which are pointers
	}
	src, found := p.objects[obj]
	if !found {
		return "", 0, 0, false
	}
	n, complete := locate(src.root, fieldPath)
	return src.file, n.Line, n.Column, complete
}

// locate walks a field path down from root. It returns the node that locates the deepest part of
// the path written in the document (a key, or a list item), and whether that is the whole path.
func locate(root *yaml.Node, fieldPath string) (*yaml.Node, bool) {
	// The walker is this call's own and goes with it, so what it enters is never left.
	w := newWalker("")
	at := root
	cur, _, ok := w.enter(root, nil)
	if !ok {
		return at, false
	}
	for _, seg := range splitPath(fieldPath) {
		var next *yaml.Node
		switch {
		case cur.Kind == yaml.MappingNode:
			for _, e := range w.entries(cur, nil) {
				if e.key == seg.name {
					at, next = e.keyNode, e.val
					break
				}
			}
		case cur.Kind == yaml.SequenceNode && seg.bracket:
			i, err := strconv.Atoi(seg.name)
			if err == nil && i >= 0 && i < len(cur.Content) {
				at, next = cur.Content[i], cur.Content[i]
			}
		}
		if next == nil {
			return at, false
		}
		next, _, ok := w.enter(next, nil)
		if !ok {
			return at, false
		}
		cur = next
	}
	return at, true
}

// segment is one step of a field path: a name after a dot, or what is between brackets (a list
// index or a map key).
type segment struct {
	name    string
	bracket bool
}

// splitPath splits a path as field.Path prints it: a.b[2].c[key].
func splitPath(path string) []segment {
	var out []segment
	for i := 0; i < len(path); {
		switch path[i] {
		case '.':
			i++
		case '[':
			end := strings.IndexByte(path[i:], ']')
			if end < 0 {
				return append(out, segment{name: path[i+1:], bracket: true})
			}
			out = append(out, segment{name: path[i+1 : i+end], bracket: true})
			i += end + 1
		default:
			end := strings.IndexAny(path[i:], ".[")
			if end < 0 {
				end = len(path) - i
			}
			out = append(out, segment{name: path[i : i+end]})
			i += end
		}
	}
	return out
}

// Explain turns the field errors found in obj, one of o's objects, into problems located in its
// file: at the line of the field, or of the nearest enclosing field that is written when the
// field itself is not (a missing required field, for example), or at the object's own line. An
// object not decoded by o (a Workflow read from a store, say) gives problems without a file.
// The result is sorted.
func (o *Objects) Explain(obj any, errs field.ErrorList) Errors {
	out := make(Errors, 0, len(errs))
	for _, fe := range errs {
		if fe == nil {
			continue
		}
		e := &Error{Path: fe.Field, Msg: fe.ErrorBody()}
		if o != nil {
			e.File, e.Line, e.Column, _ = o.Positions.Lookup(obj, fe.Field)
		}
		out = append(out, e)
	}
	out.Sort()
	return out
}
