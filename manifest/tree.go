package manifest

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Bounds on the work one document may cause. Aliases (*name) are counted each time they are used,
// so that a small document cannot expand to a huge one; a document without aliases reaches the
// node bound only if it holds a megabyte or more of dense YAML, more than a Kubernetes object may.
const (
	// MaxFileSize is the largest file, in bytes, that Decode and DecodeFiles accept.
	MaxFileSize = 4 << 20
	// MaxExpandedNodes is the most YAML nodes one document may expand to once its aliases are
	// resolved; it stops "billion laughs" documents.
	MaxExpandedNodes = 1_000_000
	// MaxExpandedText is the most bytes of scalar text one document may expand to once its
	// aliases are resolved.
	MaxExpandedText = 16 << 20
	// MaxDepth is the deepest nesting of objects and lists a document may have, aliases included.
	MaxDepth = 10_000
)

// Short YAML tags, as yaml.Node.ShortTag reports them.
const (
	strTag       = "!!str"
	intTag       = "!!int"
	floatTag     = "!!float"
	boolTag      = "!!bool"
	nullTag      = "!!null"
	timestampTag = "!!timestamp"
	mergeTag     = "!!merge"
)

// walker walks the node tree of one document. It resolves aliases and merge keys, refuses alias
// cycles and runaway expansion, and collects problems with their position instead of stopping at
// the first. The decoder and the position lookup share it.
type walker struct {
	file string
	errs Errors
	// reported keeps problems already reported at a node, which merge keys can make us visit twice.
	reported map[reported]bool
	// nodes and text count what the walk has visited so far, aliases expanded.
	nodes, text int
	depth       int
	// active holds the anchored nodes being visited, to find an alias inside its own anchor.
	active map[*yaml.Node]bool
	// aliases are the aliases being expanded, outermost first.
	aliases []aliasAt
	// stopped is set once a bound is exceeded: the walk then does nothing more.
	stopped bool
	// fields caches the JSON field table of each struct type met.
	fields map[reflect.Type]map[string][]int
}

type aliasAt struct {
	node *yaml.Node
	path *field.Path
}

type reported struct {
	node *yaml.Node
	msg  string
}

func newWalker(file string) *walker {
	return &walker{
		file:     file,
		reported: map[reported]bool{},
		active:   map[*yaml.Node]bool{},
		fields:   map[reflect.Type]map[string][]int{},
	}
}

// errorf records a problem at node n for the field at path.
func (w *walker) errorf(n *yaml.Node, path *field.Path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	key := reported{n, msg}
	if w.reported[key] {
		return
	}
	w.reported[key] = true
	e := &Error{File: w.file, Msg: msg}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	if path != nil {
		e.Path = path.String()
	}
	w.errs = append(w.errs, e)
}

// count charges one node to the walk's bounds and reports whether the walk may go on. A bound
// exceeded is reported at the outermost alias being expanded, the likely culprit.
func (w *walker) count(n *yaml.Node, path *field.Path) bool {
	if w.stopped {
		return false
	}
	w.nodes++
	text := n // an alias to a scalar repeats its text
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		text = n.Alias
	}
	if text.Kind == yaml.ScalarNode {
		w.text += len(text.Value)
	}
	if w.nodes <= MaxExpandedNodes && w.text <= MaxExpandedText {
		return true
	}
	if len(w.aliases) > 0 {
		n, path = w.aliases[0].node, w.aliases[0].path
	}
	if w.nodes > MaxExpandedNodes {
		w.errorf(n, path, "the document has more than %d YAML nodes, counting each use of an alias (*name)", MaxExpandedNodes)
	} else {
		w.errorf(n, path, "the document has more than %d bytes of text, counting each use of an alias (*name)", MaxExpandedText)
	}
	w.stopped = true
	return false
}

// visit is what enter did, for leave to undo.
type visit struct {
	// marked is the anchored node marked active, if any.
	marked *yaml.Node
	// alias is set when an alias was pushed on the alias stack.
	alias bool
}

// enter starts visiting n: it charges the bounds and resolves an alias to the node it names. An
// anchored node is marked while it is visited, so that an alias to it found inside it (which would
// expand without end) is refused. It returns the node to visit and what leave must undo.
func (w *walker) enter(n *yaml.Node, path *field.Path) (*yaml.Node, visit, bool) {
	var v visit
	if n == nil || !w.count(n, path) {
		return nil, v, false
	}
	if w.depth >= MaxDepth {
		w.errorf(n, path, "the document nests more than %d levels deep", MaxDepth)
		w.stopped = true
		return nil, v, false
	}
	t := n
	if n.Kind == yaml.AliasNode {
		t = n.Alias
		if t == nil {
			w.errorf(n, path, "unknown anchor %q", n.Value)
			return nil, v, false
		}
		if w.active[t] {
			w.errorf(n, path, "alias *%s is used inside its own anchor &%s", n.Value, t.Anchor)
			return nil, v, false
		}
		w.aliases = append(w.aliases, aliasAt{node: n, path: path})
		v.alias = true
	}
	if t.Anchor != "" && !w.active[t] {
		w.active[t] = true
		v.marked = t
	}
	w.depth++
	return t, v, true
}

// leave ends a visit enter started.
func (w *walker) leave(v visit) {
	w.depth--
	if v.marked != nil {
		delete(w.active, v.marked)
	}
	if v.alias {
		w.aliases = w.aliases[:len(w.aliases)-1]
	}
}

// entry is one key of a mapping with its value.
type entry struct {
	key     string
	keyNode *yaml.Node
	val     *yaml.Node
}

// entries lists the keys of mapping m in order, with merge keys ("<<: *base") expanded: a key
// written in m wins over a merged one, and an earlier merged mapping wins over a later one.
// Duplicate keys and keys that are not scalars are reported and left out.
func (w *walker) entries(m *yaml.Node, path *field.Path) []entry {
	out := make([]entry, 0, len(m.Content)/2)
	seen := map[string]int{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if !w.count(k, path) {
			return out
		}
		kd := k
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			kd = k.Alias
		}
		if kd.Kind != yaml.ScalarNode {
			w.errorf(k, path, "a key must be a string, got %s", describe(kd))
			continue
		}
		if kd.ShortTag() == mergeTag {
			merges = append(merges, v)
			continue
		}
		if j, dup := seen[kd.Value]; dup {
			w.errorf(k, freeChild(path, kd.Value), "duplicate key %q (first at line %d)", kd.Value, out[j].keyNode.Line)
			continue
		}
		seen[kd.Value] = len(out)
		out = append(out, entry{key: kd.Value, keyNode: k, val: v})
	}
	for _, v := range merges {
		w.merge(v, path, seen, &out, true)
	}
	return out
}

// merge adds the keys of the merge value v to out, those of seen excepted. v is a mapping or, when
// list is set, a list of mappings.
func (w *walker) merge(v *yaml.Node, path *field.Path, seen map[string]int, out *[]entry, list bool) {
	v, vis, ok := w.enter(v, path)
	if !ok {
		return
	}
	defer w.leave(vis)
	switch {
	case v.Kind == yaml.MappingNode:
		for _, e := range w.entries(v, path) {
			if _, dup := seen[e.key]; !dup {
				seen[e.key] = len(*out)
				*out = append(*out, e)
			}
		}
	case v.Kind == yaml.SequenceNode && list:
		for _, item := range v.Content {
			w.merge(item, path, seen, out, false)
		}
	default:
		w.errorf(v, path, "a merge key (<<) needs an object or a list of objects, got %s", describe(v))
	}
}

// isNull reports whether n is a YAML null: null, ~, or nothing at all.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag
}

// describe names the kind of value n holds, for messages such as "expected a string, got a list".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "an object"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case strTag:
			return fmt.Sprintf("a string (%q)", clip(n.Value))
		case intTag, floatTag:
			return fmt.Sprintf("a number (%s)", clip(n.Value))
		case boolTag:
			return fmt.Sprintf("a boolean (%s)", n.Value)
		case nullTag:
			return "null"
		case timestampTag:
			return fmt.Sprintf("a timestamp (%s)", clip(n.Value))
		default:
			return fmt.Sprintf("a value tagged %s", tag)
		}
	}
	return "nothing"
}

// clip shortens s for a message.
func clip(s string) string {
	const limit = 40
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// freeChild is the path of key name in an object: a child when the name reads well after a dot
// (spec.context), else a bracketed key, as in properties[a.b], which Lookup can split back.
func freeChild(path *field.Path, name string) *field.Path {
	if name == "" || strings.ContainsAny(name, ".[]") {
		return path.Key(name)
	}
	return path.Child(name)
}
