// Package manifest reads the files a user writes - WorkflowRuns, Workflows,
// WorkflowStepDefinitions, and the application delivery kinds (Applications, their
// ComponentDefinitions, TraitDefinitions and PolicyDefinitions, ApplicationRevisions and
// ResourceTrackers) in YAML or JSON, several documents to a file - into the api types,
// strictly: an unknown field, a value of the wrong type, a duplicate key or malformed YAML is an
// error located at its file, line, column and field path, and all the errors of a document are
// reported together. It remembers where each decoded field was written, so that later checks
// (validation, CUE) can point at the line of the field they reject (see Objects.Explain).
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
)

// DefaultNamespace is the namespace of an object whose metadata.namespace is empty.
const DefaultNamespace = "default"

// Objects is what a set of files declares.
type Objects struct {
	Runs        []*v1alpha1.WorkflowRun
	Workflows   []*v1alpha1.Workflow
	Definitions []*v1beta1.WorkflowStepDefinition
	// Packages are KubeVela's CUE packages (cue.oam.dev/v1alpha1), which definitions import,
	// with their external providers.
	Packages []*cuev1alpha1.Package

	Applications         []*v1beta1.Application
	ComponentDefinitions []*v1beta1.ComponentDefinition
	TraitDefinitions     []*v1beta1.TraitDefinition
	PolicyDefinitions    []*v1beta1.PolicyDefinition
	ApplicationRevisions []*v1beta1.ApplicationRevision
	ResourceTrackers     []*v1beta1.ResourceTracker
	// Positions lets a later error (validation, CUE) be reported at file:line of a field path.
	Positions *Positions

	// declared maps kind/namespace/name to where the object was first declared.
	declared map[string]string
}

// Delivery names the application delivery objects of o (Applications, X-Definitions,
// ApplicationRevisions, ResourceTrackers) as "Kind namespace/name", for the commands that store
// or run only workflow objects to refuse them by name.
func (o *Objects) Delivery() []string {
	var out []string
	add := func(kind string, m metav1.Object) {
		out = append(out, kind+" "+m.GetNamespace()+"/"+m.GetName())
	}
	for _, x := range o.Applications {
		add(v1beta1.KindApplication, x)
	}
	for _, x := range o.ComponentDefinitions {
		add(v1beta1.KindComponentDefinition, x)
	}
	for _, x := range o.TraitDefinitions {
		add(v1beta1.KindTraitDefinition, x)
	}
	for _, x := range o.PolicyDefinitions {
		add(v1beta1.KindPolicyDefinition, x)
	}
	for _, x := range o.ApplicationRevisions {
		add(v1beta1.KindApplicationRevision, x)
	}
	for _, x := range o.ResourceTrackers {
		add(v1beta1.KindResourceTracker, x)
	}
	return out
}

// Decode reads the objects of one file, whose documents are separated by "---". JSON is read as
// the YAML it is. Empty documents are skipped.
//
// Decoding also fills what KubeVela fills on admission: an empty metadata.namespace becomes
// "default", and unnamed steps are named by v1alpha1.DefaultStepNames. metadata.generateName is
// accepted and left for the caller to turn into a name.
//
// On any problem Decode returns no objects and an Errors listing every problem found, sorted by
// line.
func Decode(filename string, data []byte) (*Objects, error) {
	o := newObjects()
	if err := o.decode(filename, data).errOrNil(); err != nil {
		return nil, err
	}
	return o, nil
}

// DecodeFiles reads the files and merges their objects. An object declared twice (same kind,
// namespace and name), in one file or in two, is a problem. The problems of all the files are
// returned together as an Errors, sorted by file and line; a file that cannot be read is returned
// as the error of reading it.
func DecodeFiles(paths ...string) (*Objects, error) {
	o := newObjects()
	var errs Errors
	for _, p := range paths {
		data, err := readFile(p)
		if err != nil {
			return nil, err
		}
		errs = append(errs, o.decode(p, data)...)
	}
	if err := errs.errOrNil(); err != nil {
		return nil, err
	}
	return o, nil
}

// readFile reads a file of at most MaxFileSize bytes, and one byte more when it is larger.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer func() { _ = f.Close() }() // only read: closing cannot lose anything
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("manifest: read %s: %w", path, err)
	}
	return data, nil
}

func newObjects() *Objects {
	return &Objects{Positions: &Positions{}, declared: map[string]string{}}
}

// decode adds the objects of one file to o and returns the problems found.
func (o *Objects) decode(file string, data []byte) Errors {
	if len(data) > MaxFileSize {
		return Errors{{File: file, Msg: fmt.Sprintf("the file is larger than %d bytes, the most a manifest may have", MaxFileSize)}}
	}
	var errs Errors
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := parse(dec, &doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The parser cannot go on after a syntax error.
			return append(errs, syntaxError(file, data, err))
		}
		errs = append(errs, o.document(file, &doc)...)
	}
	return errs
}

// parse reads the next document, turning a parser panic into an error.
func parse(dec *yaml.Decoder, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the parser failed: %v", r)
		}
	}()
	return dec.Decode(doc)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError locates an error of the YAML parser in data. The parser puts a line in most of its
// messages, counted from 1 for the problems its scanner finds but from 0 for those its parser
// finds, and none for a problem on the first line; problems with the bytes themselves (bad UTF-8, a
// control character) and an unknown anchor come without a line, which is found here.
func syntaxError(file string, data []byte, err error) *Error {
	e := &Error{File: file}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if isParserProblem(msg) {
			e.Line++
		}
	} else if line, col, ok := firstBadChar(data); ok && isReaderProblem(msg) {
		e.Line, e.Column = line, col
	} else if anchor, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		e.Line, e.Column = find(data, "*"+strings.TrimSuffix(anchor, "' referenced"))
	} else if !strings.HasPrefix(msg, "the parser failed") {
		e.Line = 1
	}
	e.Msg = "invalid YAML: " + msg
	return e
}

// isParserProblem reports whether msg is a problem of libyaml's parser, as opposed to its scanner.
func isParserProblem(msg string) bool {
	switch msg {
	case "did not find expected <stream-start>", "did not find expected <document start>",
		"did not find expected node content", "did not find expected '-' indicator",
		"did not find expected key", "did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"found undefined tag handle", "found duplicate %YAML directive", "found duplicate %TAG directive",
		"found incompatible YAML document":
		return true
	}
	return false
}

// isReaderProblem reports whether msg is a problem of libyaml's reader, which checks the bytes.
func isReaderProblem(msg string) bool {
	return strings.Contains(msg, "UTF-8") || strings.Contains(msg, "UTF-16") ||
		strings.Contains(msg, "control characters") || strings.Contains(msg, "Unicode character")
}

// firstBadChar finds the first byte of data that is not valid UTF-8 or a character YAML allows.
func firstBadChar(data []byte) (line, col int, ok bool) {
	line, col = 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if (r == utf8.RuneError && size <= 1) || !yamlPrintable(r) {
			return line, col, true
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return 0, 0, false
}

// yamlPrintable reports whether YAML allows r in a document.
func yamlPrintable(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r', r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7E, r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= utf8.MaxRune:
		return true
	}
	return false
}

// find returns the line and column of the first occurrence of s in data, or 0, 0.
func find(data []byte, s string) (line, col int) {
	before, _, found := bytes.Cut(data, []byte(s))
	if !found {
		return 0, 0
	}
	line = 1 + bytes.Count(before, []byte("\n"))
	return line, 1 + utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
}

// kindKey is an apiVersion and kind pair.
type kindKey struct{ apiVersion, kind string }

// newObject returns a new, empty object of the given apiVersion and kind, or nil.
func newObject(apiVersion, kind string) any {
	switch (kindKey{apiVersion, kind}) {
	case kindKey{v1alpha1.GroupVersion.String(), v1alpha1.KindWorkflowRun}:
		return &v1alpha1.WorkflowRun{}
	case kindKey{v1alpha1.GroupVersion.String(), v1alpha1.KindWorkflow}:
		return &v1alpha1.Workflow{}
	case kindKey{v1beta1.GroupVersion.String(), v1beta1.KindWorkflowStepDefinition}:
		return &v1beta1.WorkflowStepDefinition{}
	case kindKey{v1beta1.GroupVersion.String(), v1beta1.KindApplication}:
		return &v1beta1.Application{}
	case kindKey{v1beta1.GroupVersion.String(), v1beta1.KindComponentDefinition}:
		return &v1beta1.ComponentDefinition{}
	case kindKey{v1beta1.GroupVersion.String(), v1beta1.KindTraitDefinition}:
		return &v1beta1.TraitDefinition{}
	case kindKey{v1beta1.GroupVersion.String(), v1beta1.KindPolicyDefinition}:
		return &v1beta1.PolicyDefinition{}
	case kindKey{v1beta1.GroupVersion.String(), v1beta1.KindApplicationRevision}:
		return &v1beta1.ApplicationRevision{}
	case kindKey{v1beta1.GroupVersion.String(), v1beta1.KindResourceTracker}:
		return &v1beta1.ResourceTracker{}
	case kindKey{cuev1alpha1.GroupVersion.String(), cuev1alpha1.KindPackage}:
		return &cuev1alpha1.Package{}
	}
	return nil
}

// servedAs is the apiVersion stepflow reads kind in, or "".
func servedAs(kind string) string {
	switch kind {
	case v1alpha1.KindWorkflowRun, v1alpha1.KindWorkflow:
		return v1alpha1.GroupVersion.String()
	case v1beta1.KindWorkflowStepDefinition, v1beta1.KindApplication, v1beta1.KindComponentDefinition,
		v1beta1.KindTraitDefinition, v1beta1.KindPolicyDefinition, v1beta1.KindApplicationRevision,
		v1beta1.KindResourceTracker:
		return v1beta1.GroupVersion.String()
	case cuev1alpha1.KindPackage:
		return cuev1alpha1.GroupVersion.String()
	}
	return ""
}

// document decodes one document into o.
func (o *Objects) document(file string, doc *yaml.Node) Errors {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	w := newWalker(file)
	root, vis, ok := w.enter(doc.Content[0], nil)
	if !ok {
		return w.errs
	}
	defer w.leave(vis)
	if isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		w.errorf(root, nil, "a document must be an object with apiVersion and kind, got %s", describe(root))
		return w.errs
	}
	obj, kind := w.objectFor(root)
	if obj == nil {
		return w.errs
	}
	w.decode(root, reflect.ValueOf(obj).Elem(), nil)
	if len(w.errs) > 0 {
		return w.errs
	}
	o.add(w, obj, kind, root)
	return w.errs
}

// objectFor reads apiVersion and kind and returns a new object of that kind and the kind, or nil
// with the problem recorded.
func (w *walker) objectFor(root *yaml.Node) (any, string) {
	var apiVersion, kind *yaml.Node
	for _, e := range w.entries(root, nil) {
		switch e.key {
		case "apiVersion":
			apiVersion = e.val
		case "kind":
			kind = e.val
		}
	}
	text := func(n *yaml.Node, name string) (string, bool) {
		if n == nil {
			w.errorf(root, field.NewPath(name), "missing %s", name)
			return "", false
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != strTag {
			w.errorf(n, field.NewPath(name), "expected a string, got %s", describe(n))
			return "", false
		}
		return n.Value, true
	}
	av, okA := text(apiVersion, "apiVersion")
	k, okK := text(kind, "kind")
	if !okA || !okK {
		return nil, ""
	}
	if obj := newObject(av, k); obj != nil {
		return obj, k
	}
	if want := servedAs(k); want != "" {
		w.errorf(apiVersion, field.NewPath("apiVersion"), "kind %s is read as apiVersion %s, not %s", k, want, av)
		return nil, ""
	}
	w.errorf(kind, field.NewPath("kind"), "unsupported kind %s (apiVersion %s): stepflow reads WorkflowRun and Workflow (%s) and WorkflowStepDefinition, Application, ComponentDefinition, TraitDefinition, PolicyDefinition, ApplicationRevision and ResourceTracker (%s) and Package (%s)",
		k, av, v1alpha1.GroupVersion, v1beta1.GroupVersion, cuev1alpha1.GroupVersion)
	return nil, ""
}

// add fills the defaults of a decoded object of the given kind and adds it to o, unless it
// repeats an object already declared.
func (o *Objects) add(w *walker, obj any, kind string, root *yaml.Node) {
	meta := obj.(metav1.Object) // every kind embeds ObjectMeta
	if _, clusterScoped := obj.(*v1beta1.ResourceTracker); meta.GetNamespace() == "" && !clusterScoped {
		meta.SetNamespace(DefaultNamespace)
	}
	namePath := field.NewPath("metadata", "name")
	name := meta.GetName()
	switch obj := obj.(type) {
	case *v1alpha1.WorkflowRun:
		if obj.Spec.WorkflowSpec != nil {
			v1alpha1.DefaultStepNames(obj.Spec.WorkflowSpec.Steps)
		}
	case *v1alpha1.Workflow:
		v1alpha1.DefaultStepNames(obj.Steps)
	case *v1beta1.Application:
		if obj.Spec.Workflow != nil {
			v1alpha1.DefaultStepNames(obj.Spec.Workflow.Steps)
		}
	case *v1beta1.WorkflowStepDefinition:
		if name == "" {
			n, _ := locate(root, namePath.String())
			w.errorf(n, namePath, "a WorkflowStepDefinition needs a name: the step type it declares")
			return
		}
	case *cuev1alpha1.Package:
		if name == "" {
			n, _ := locate(root, namePath.String())
			w.errorf(n, namePath, "a Package needs a name: the provider name its actions give as #provider")
			return
		}
	case *v1beta1.ComponentDefinition, *v1beta1.TraitDefinition, *v1beta1.PolicyDefinition:
		if name == "" {
			n, _ := locate(root, namePath.String())
			w.errorf(n, namePath, "a %s needs a name: the type it declares", kind)
			return
		}
	}
	if name != "" {
		key := kind + " " + meta.GetNamespace() + "/" + name
		if first, dup := o.declared[key]; dup {
			n, _ := locate(root, namePath.String())
			w.errorf(n, namePath, "%s %s/%s is declared twice (first at %s)", kind, meta.GetNamespace(), name, first)
			return
		}
		o.declared[key] = fmt.Sprintf("%s:%d", w.file, root.Line)
	}
	switch obj := obj.(type) {
	case *v1alpha1.WorkflowRun:
		o.Runs = append(o.Runs, obj)
	case *v1alpha1.Workflow:
		o.Workflows = append(o.Workflows, obj)
	case *v1beta1.WorkflowStepDefinition:
		o.Definitions = append(o.Definitions, obj)
	case *v1beta1.Application:
		o.Applications = append(o.Applications, obj)
	case *v1beta1.ComponentDefinition:
		o.ComponentDefinitions = append(o.ComponentDefinitions, obj)
	case *v1beta1.TraitDefinition:
		o.TraitDefinitions = append(o.TraitDefinitions, obj)
	case *v1beta1.PolicyDefinition:
		o.PolicyDefinitions = append(o.PolicyDefinitions, obj)
	case *v1beta1.ApplicationRevision:
		o.ApplicationRevisions = append(o.ApplicationRevisions, obj)
	case *v1beta1.ResourceTracker:
		o.ResourceTrackers = append(o.ResourceTrackers, obj)
	case *cuev1alpha1.Package:
		o.Packages = append(o.Packages, obj)
	}
	o.Positions.add(obj, w.file, root)
}
