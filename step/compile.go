// compile.go: templates compiled into a generation's cue.Context (definition, generation),
// with the registry's packages, and CUE errors rendered with positions (describe).

package step

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
)

// preamble is put before every template, on its first line so that line numbers stay right.
// Short-circuit evaluation of && and || is what the CUE spec says and what KubeVela's
// definitions rely on (`x.status != _|_ && x.status.phase == "Ready"`); CUE v0.17 only does it
// under this experiment.
const preamble = "@experiment(shortcircuit), "

// condFile names the source of an `if` expression; its errors are reported without positions,
// which would be those of the text the expression was wrapped in.
const condFile = "if"

// generation is a cue.Context and what was compiled in it. A context grows with every value made
// in it, so the runner starts a new generation after a number of evaluations; values of an older
// generation stay valid for the evaluations still using them.
type generation struct {
	ctx   *cue.Context
	evals atomic.Int64

	mu    sync.Mutex // guards the maps and every compilation in ctx
	pkgs  map[string]*build.Instance
	defs  map[[32]byte]*definition
	conds map[string]cue.Value
	// checks are the answers of checkProperties, by definition, namespace and properties.
	checks map[checkKey]error
}

func newGeneration() *generation {
	return &generation{
		ctx:    cuecontext.New(),
		pkgs:   map[string]*build.Instance{},
		defs:   map[[32]byte]*definition{},
		conds:  map[string]cue.Value{},
		checks: map[checkKey]error{},
	}
}

// definition is a compiled template.
type definition struct {
	// file is the whole template; root is where its fields are: the file itself, or the
	// `template` field of a template written as KubeVela's definition files are.
	file cue.Value
	root cue.Path
	// filename names the template in positions: <type>.cue.
	filename string
	// usesContext is set when the template refers to `context`: only then is it filled.
	usesContext bool
	// sensitive is set when the template marks a field @sensitive(): only then are the
	// parameter's fields searched for the attribute at every evaluation.
	sensitive bool
	// info is what the Runner keeps of the template between evaluations.
	info *defInfo
	// err is why the template does not compile; it is cached like a success.
	err error
	// ext are the external packages the template came with (Bundle).
	ext []ExternalPackage
}

// defInfo is what the Runner learns of a definition by evaluating it, in its process or in a
// child evaluator, and keeps for its next evaluations.
type defInfo struct {
	// loneSuspend is the path of the template's only action when that is a builtin suspend
	// and the template has nothing else but its parameter: a resume releases such a step
	// without evaluating it again. "" when not, or not known yet.
	loneSuspend atomic.Pointer[string]
	// notLocal is set once a quick evaluation (Runner.RunQuick) reached an action that is not
	// local: the step type's evaluations are no longer tried as quick ones.
	notLocal atomic.Bool
}

func (i *defInfo) lone() string {
	if p := i.loneSuspend.Load(); p != nil {
		return *p
	}
	return ""
}

func (i *defInfo) setLone(path string) { i.loneSuspend.Store(&path) }

// rootOf returns the template's fields in v, a filled copy of file.
func (d *definition) rootOf(v cue.Value) cue.Value {
	if len(d.root.Selectors()) == 0 {
		return v
	}
	return v.LookupPath(d.root)
}

// paramPath is where the template's parameter is.
func (d *definition) paramPath() cue.Path {
	return cue.MakePath(append(d.root.Selectors(), cue.Str("parameter"))...)
}

var (
	contextPath  = cue.MakePath(cue.Str("context"))
	doPath       = cue.MakePath(cue.Def("#do"))
	providerPath = cue.MakePath(cue.Def("#provider"))
	paramsSel    = cue.Str("$params")
	returnsSel   = cue.Str("$returns")
)

// definition compiles a template once per generation and caches the outcome.
func (g *generation) definition(reg *Registry, typ, template string) *definition {
	key := sha256.Sum256([]byte(typ + "\x00" + template))
	g.mu.Lock()
	defer g.mu.Unlock()
	if d, ok := g.defs[key]; ok {
		return d
	}
	d := g.compile(reg, typ, template)
	g.defs[key] = d
	return d
}

// compile builds a template with the registry's packages supplied under their import paths.
// g.mu is held.
func (g *generation) compile(reg *Registry, typ, template string) *definition {
	template, ext := Unbundle(template)
	filename := typ + ".cue"
	// Templates refer to `context` without declaring it: the runner fills it. The declaration
	// goes at the end, once the template is known to parse alone: an unfinished expression at
	// its end would take the declaration in and be reported past the end of the template.
	if _, err := parser.ParseFile(filename, preamble+template); err != nil {
		return &definition{err: describe(err)}
	}
	f, err := parser.ParseFile(filename, preamble+template+"\ncontext: _\n", parser.ParseComments)
	if err != nil {
		return &definition{err: describe(err)}
	}
	dropUnusedImports(f)
	inst := build.NewContext().NewInstance(filename, nil)
	if err := inst.AddSyntax(f); err != nil {
		return &definition{err: describe(err)}
	}
	inst.Imports, err = g.imports(reg, ext, f)
	if err != nil {
		return &definition{err: err}
	}
	if err := checkPackageRefs(f, inst.Imports); err != nil {
		return &definition{err: describe(err)}
	}
	v := g.ctx.BuildInstance(inst)
	if err := v.Validate(); err != nil {
		return &definition{err: describe(err)}
	}
	d := &definition{file: v, filename: filename, usesContext: refersTo(f, "context"), sensitive: hasAttribute(f, attrSensitive), ext: ext}
	// KubeVela's definition files wrap the template: `template: {parameter: ..., ...}`.
	if t := v.LookupPath(cue.MakePath(cue.Str("template"))); t.Exists() && !t.LookupPath(providerPath).Exists() &&
		!v.LookupPath(cue.MakePath(cue.Str("parameter"))).Exists() {
		d.root = t.Path()
	}
	d.info = &defInfo{}
	d.info.setLone(loneSuspend(f, d))
	return d
}

// loneSuspend returns the label of the one field of a template that is a builtin suspend
// action, when the template declares nothing else (at the top of the file) but its parameter;
// otherwise "". Comprehensions and embeddings at the top could add fields, so they rule it out.
func loneSuspend(f *ast.File, d *definition) string {
	if len(d.root.Selectors()) > 0 {
		return ""
	}
	label := ""
	for _, decl := range f.Decls {
		switch x := decl.(type) {
		case *ast.ImportDecl, *ast.Attribute, *ast.Package, *ast.CommentGroup:
		case *ast.Field:
			name, _, err := ast.LabelName(x.Label)
			switch {
			case err != nil || x.Constraint != token.ILLEGAL:
				return ""
			case name == "parameter" || name == "context":
			case label != "" || strings.HasPrefix(name, "#") || strings.HasPrefix(name, "_"):
				return ""
			default:
				label = name
			}
		default:
			return ""
		}
	}
	if label == "" {
		return ""
	}
	a := d.file.LookupPath(cue.MakePath(cue.Str(label)))
	provider, perr := a.LookupPath(providerPath).String()
	do, derr := a.LookupPath(doPath).String()
	if perr != nil || derr != nil || provider != "builtin" || do != "suspend" {
		return ""
	}
	return a.Path().String()
}

// checkPackageRefs reports a reference to something a supplied package does not declare, such
// as op.#Nope: CUE takes it for a value that may still come and does not report it, but a
// package is complete, so the template can never work.
func checkPackageRefs(f *ast.File, pkgs []*build.Instance) error {
	declared := map[string]map[string]bool{} // local import name -> top-level labels
	for spec := range f.ImportSpecs() {
		path, _ := strconv.Unquote(spec.Path.Value)
		for _, inst := range pkgs {
			if inst.ImportPath != path {
				continue
			}
			name := inst.PkgName
			if spec.Name != nil {
				name = spec.Name.Name
			}
			labels := map[string]bool{}
			for _, pf := range inst.Files {
				for _, decl := range pf.Decls {
					if field, ok := decl.(*ast.Field); ok {
						if l, _, err := ast.LabelName(field.Label); err == nil {
							labels[l] = true
						}
					}
				}
			}
			declared[name] = labels
		}
	}
	var errs cueerrors.Error
	ast.Walk(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok {
			return true
		}
		if _, isImport := x.Node.(*ast.ImportSpec); !isImport {
			return true
		}
		labels, ok := declared[x.Name]
		if !ok {
			return true
		}
		if l, _, err := ast.LabelName(sel.Sel); err == nil && !labels[l] {
			errs = cueerrors.Append(errs, cueerrors.Newf(sel.Sel.Pos(), "%s.%s is not declared by package %s", x.Name, l, x.Name))
		}
		return true
	}, nil)
	return errs
}

// imports returns the instances of the supplied packages that f imports: the registry's, then
// the external ones the template came with. g.mu is held.
func (g *generation) imports(reg *Registry, ext []ExternalPackage, f *ast.File) ([]*build.Instance, error) {
	var out []*build.Instance
	for spec := range f.ImportSpecs() {
		path, _ := strconv.Unquote(spec.Path.Value)
		var inst *build.Instance
		var err error
		if _, ok := reg.Package(path); ok {
			inst, err = g.pkg(reg, path)
		} else if i := slices.IndexFunc(ext, func(p ExternalPackage) bool { return p.Path == path }); i >= 0 {
			inst, err = g.extPkg(reg, ext, &ext[i])
		} else {
			continue // a standard-library package, or an error CUE reports
		}
		if err != nil {
			return nil, err
		}
		out = append(out, inst)
	}
	return out, nil
}

// pkg returns the build instance of a supplied package, shared by every template of the
// generation so that the package is compiled once. g.mu is held.
func (g *generation) pkg(reg *Registry, path string) (*build.Instance, error) {
	if inst, ok := g.pkgs[path]; ok {
		return inst, nil
	}
	p, _ := reg.Package(path)
	f, err := parser.ParseFile(path, p.Source, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", path, describe(err))
	}
	dropUnusedImports(f)
	inst := build.NewContext().NewInstance(path, nil)
	inst.ImportPath = path
	inst.PkgName = path[strings.LastIndex(path, "/")+1:]
	if err := inst.AddSyntax(f); err != nil {
		return nil, fmt.Errorf("package %s: %w", path, describe(err))
	}
	g.pkgs[path] = inst // before its imports, so that an import cycle ends here
	if inst.Imports, err = g.imports(reg, nil, f); err != nil {
		return nil, err
	}
	return inst, nil
}

// extPkg returns the build instance of an external package, its files in name order, shared
// by the templates of the generation that carry the same package (the same files). g.mu is
// held.
func (g *generation) extPkg(reg *Registry, ext []ExternalPackage, p *ExternalPackage) (*build.Instance, error) {
	names := make([]string, 0, len(p.Files))
	for n := range p.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	h.Write([]byte(p.Path))
	for _, n := range names {
		h.Write([]byte("\x00" + n + "\x00" + p.Files[n]))
	}
	key := fmt.Sprintf("external:%x", h.Sum(nil))
	if inst, ok := g.pkgs[key]; ok {
		return inst, nil
	}
	inst := build.NewContext().NewInstance(p.Path, nil)
	inst.ImportPath = p.Path
	inst.PkgName = p.Path[strings.LastIndex(p.Path, "/")+1:]
	var files []*ast.File
	for _, n := range names {
		f, err := parser.ParseFile(p.Path+"/"+n, p.Files[n], parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("package %s (Package %s): %w", p.Path, p.Name, describe(err))
		}
		dropUnusedImports(f)
		if name := f.PackageName(); name != "" {
			inst.PkgName = name
		}
		if err := inst.AddSyntax(f); err != nil {
			return nil, fmt.Errorf("package %s (Package %s): %w", p.Path, p.Name, describe(err))
		}
		files = append(files, f)
	}
	g.pkgs[key] = inst // before its imports, so that an import cycle ends here
	for _, f := range files {
		imps, err := g.imports(reg, ext, f)
		if err != nil {
			return nil, err
		}
		for _, i := range imps {
			if !slices.Contains(inst.Imports, i) {
				inst.Imports = append(inst.Imports, i)
			}
		}
	}
	return inst, nil
}

// dropUnusedImports removes the imports that no identifier of f refers to. KubeVela's published
// definitions have some, which current CUE rejects. The parser has resolved each reference to
// an import to its ImportSpec, so a field that merely has the package's name is no use.
func dropUnusedImports(f *ast.File) {
	used := map[*ast.ImportSpec]bool{}
	ast.Walk(f, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok {
			if spec, ok := id.Node.(*ast.ImportSpec); ok {
				used[spec] = true
			}
		}
		return true
	}, nil)
	decls := f.Decls[:0]
	for _, d := range f.Decls {
		if imp, ok := d.(*ast.ImportDecl); ok {
			specs := imp.Specs[:0]
			for _, s := range imp.Specs {
				if used[s] {
					specs = append(specs, s)
				}
			}
			if imp.Specs = specs; len(specs) == 0 {
				continue
			}
		}
		decls = append(decls, d)
	}
	f.Decls = decls
}

// refersTo reports whether an identifier of f refers to something named name: the parser
// resolved references, and labels refer to nothing.
func refersTo(f *ast.File, name string) bool {
	found := false
	ast.Walk(f, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok && id.Name == name && id.Node != nil {
			found = true
		}
		return !found
	}, nil)
	return found
}

// cueError is a CUE error rendered as "file:line:col: path: message", one per problem.
type cueError struct{ msg string }

func (e *cueError) Error() string { return e.msg }

// describe renders a CUE error with the position of each problem. Columns on the first line of
// a template (a file named *.cue; packages are named by import path) are given as the user
// wrote them, without the preamble.
func describe(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*cueError](err); ok {
		return err
	}
	var lines []string
	seen := map[string]bool{}
	for _, e := range cueerrors.Errors(err) {
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if p := e.Path(); len(p) > 0 {
			msg = strings.Join(p, ".") + ": " + msg
		}
		pos := e.Position()
		if in := e.InputPositions(); !pos.IsValid() && len(in) > 0 {
			pos = in[0]
		}
		if pos.IsValid() && pos.Filename() != condFile {
			msg = position(pos) + ": " + msg
		}
		if !seen[msg] {
			seen[msg] = true
			lines = append(lines, msg)
		}
	}
	if len(lines) == 0 {
		return &cueError{msg: err.Error()}
	}
	return &cueError{msg: strings.Join(lines, "; ")}
}

func position(pos token.Pos) string {
	col := pos.Column()
	if pos.Line() == 1 && col > len(preamble) && strings.HasSuffix(pos.Filename(), ".cue") {
		col -= len(preamble)
	}
	return fmt.Sprintf("%s:%d:%d", pos.Filename(), pos.Line(), col)
}
