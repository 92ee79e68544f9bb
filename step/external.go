// external.go: external packages (KubeVela's Package kind): their CUE travels with the template
// of a definition that imports them (Bundle), is compiled as the registry's packages are, and
// their actions are run by Options.External.

package step

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// errNoExternal is the failure of an external action in a Runner without Options.External.
var errNoExternal = errors.New("external providers are not configured in this process")

// ExternalPackage is a CUE package users supply (a Package object): the definitions that import
// its Path compile with its Files, and the actions whose `#provider` is its Name are run by the
// External of the Runner, at Endpoint.
type ExternalPackage struct {
	// Name is the Package's name: the `#provider` of its actions.
	Name string `json:"name"`
	// Path is the import path, e.g. "ext/my".
	Path string `json:"path"`
	// Files are the package's CUE files by name.
	Files map[string]string `json:"files"`
	// Endpoint is the provider's base URL; "" for a package of CUE only.
	Endpoint string `json:"endpoint,omitempty"`
	// Reads are the actions (`#do`) that change nothing: they run at every evaluation, where
	// the others are side effects, run once per try.
	Reads []string `json:"reads,omitempty"`
}

// External runs the actions of external packages.
type External interface {
	// Call runs action do of pkg with call's parameters and returns what it returns.
	Call(ctx context.Context, pkg *ExternalPackage, do string, call *Call) (any, error)
}

// bundleMark starts the last line of a template that carries the external packages it imports:
// a CUE comment, so that the bundle is still a template to whatever reads it as one.
const bundleMark = "\n// stepflow:packages "

// Bundle returns template with the packages it imports appended, as one string: what
// Definitions.Template returns for a template importing external packages, so that the
// packages reach the child evaluators with it and are part of its compile cache's key.
func Bundle(template string, pkgs []ExternalPackage) string {
	if len(pkgs) == 0 {
		return template
	}
	b, _ := json.Marshal(pkgs) // strings and maps of strings: cannot fail
	return template + bundleMark + base64.StdEncoding.EncodeToString(b) + "\n"
}

// Unbundle splits what Bundle made into the template and its packages; a template without
// packages is returned as it is.
func Unbundle(src string) (string, []ExternalPackage) {
	i := strings.LastIndex(src, bundleMark)
	if i < 0 {
		return src, nil
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(src[i+len(bundleMark):]))
	if err != nil {
		return src, nil
	}
	var pkgs []ExternalPackage
	if json.Unmarshal(b, &pkgs) != nil {
		return src, nil
	}
	return src[:i], pkgs
}

// Imports lists the import paths of a template or of a package's file, sorted; nil when it
// does not parse (its compilation says why).
func Imports(src string) []string {
	f, err := parser.ParseFile("imports.cue", src, parser.ImportsOnly)
	if err != nil {
		return nil
	}
	var out []string
	for spec := range f.ImportSpecs() {
		if p, err := strconv.Unquote(spec.Path.Value); err == nil && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// externalAction returns the action do of the package among pkgs whose name is provider and
// that has a provider, or nil. Its Run calls ext (nil: the CUE half's shape only).
func externalAction(pkgs []ExternalPackage, provider, do string, ext External) *Action {
	for i := range pkgs {
		p := &pkgs[i]
		if p.Name != provider || p.Endpoint == "" {
			continue
		}
		a := &Action{Provider: provider, Do: do, SideEffect: Always}
		if slices.Contains(p.Reads, do) {
			a.SideEffect = nil
		}
		a.Run = func(ctx context.Context, c *Call) (any, error) {
			if ext == nil {
				return nil, engine.Terminal(v1alpha1.ReasonExecute, errNoExternal)
			}
			return ext.Call(ctx, p, do, c)
		}
		return a
	}
	return nil
}

// PackageAction is an action a package declares: a top-level definition with `#do` and
// `#provider`.
type PackageAction struct {
	// Name is the definition's label, e.g. "#Reverse"; Do and Provider its `#do` and `#provider`.
	Name     string
	Do       string
	Provider string
}

// PackageActions lists the actions a package's files declare, by name, read from their syntax
// alone (nothing is evaluated): the top-level definitions whose `#do` and `#provider` are
// string literals. A file that does not parse is skipped.
func PackageActions(files map[string]string) []PackageAction {
	var out []PackageAction
	for name, src := range files {
		f, err := parser.ParseFile(name, src)
		if err != nil {
			continue
		}
		for _, decl := range f.Decls {
			field, ok := decl.(*ast.Field)
			if !ok {
				continue
			}
			label, _, err := ast.LabelName(field.Label)
			if err != nil || !strings.HasPrefix(label, "#") {
				continue
			}
			a := PackageAction{Name: label}
			for _, x := range structFields(field.Value) {
				l, _, err := ast.LabelName(x.Label)
				lit, ok := x.Value.(*ast.BasicLit)
				if err != nil || !ok || lit.Kind != token.STRING {
					continue
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					continue
				}
				switch l {
				case "#do":
					a.Do = s
				case "#provider":
					a.Provider = s
				}
			}
			if a.Do != "" && a.Provider != "" {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b PackageAction) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// structFields are the fields of a struct literal, or of the struct literals a conjunction
// (`#X: base & {...}`) joins.
func structFields(e ast.Expr) []*ast.Field {
	switch x := e.(type) {
	case *ast.StructLit:
		var out []*ast.Field
		for _, d := range x.Elts {
			if f, ok := d.(*ast.Field); ok {
				out = append(out, f)
			}
		}
		return out
	case *ast.BinaryExpr:
		if x.Op == token.AND {
			return append(structFields(x.X), structFields(x.Y)...)
		}
	}
	return nil
}
