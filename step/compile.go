package step

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/parser"
)

// generation is a cue.Context with the definitions compiled in it. A context grows with every
// value made in it, so the runner replaces its generation after a number of evaluations;
// values of an older generation stay valid for the evaluations still using them.
type generation struct {
	ctx  *cue.Context
	uses atomic.Int64

	mu       sync.Mutex
	compiled map[[32]byte]compiled
	exprs    map[string]ast.Expr
}

type compiled struct {
	value cue.Value
	err   error
}

func newGeneration() *generation {
	return &generation{ctx: cuecontext.New(), compiled: map[[32]byte]compiled{}, exprs: map[string]ast.Expr{}}
}

// compile builds a template once per generation; later calls return the cached value.
func (g *generation) compile(reg *Registry, template string) (cue.Value, error) {
	key := sha256.Sum256([]byte(template))
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.compiled[key]; ok {
		return c.value, c.err
	}
	v, err := buildTemplate(g.ctx, reg, template)
	g.compiled[key] = compiled{value: v, err: err}
	return v, err
}

// expr parses a CUE expression once per generation.
func (g *generation) expr(src string) (ast.Expr, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.exprs[src]; ok {
		return e, nil
	}
	e, err := parser.ParseExpr("expression", src)
	if err != nil {
		return nil, err
	}
	if len(g.exprs) < 4096 {
		g.exprs[src] = e
	}
	return e, nil
}

// buildTemplate compiles a template with the packages of the registry supplied under their
// import paths. Imports the template never uses are dropped first: KubeVela's published
// definitions have some, which current CUE rejects.
func buildTemplate(ctx *cue.Context, reg *Registry, template string) (cue.Value, error) {
	// Templates refer to `context` without declaring it; the runner fills it in.
	f, err := parser.ParseFile("template.cue", template+"\ncontext: {...}\n", parser.ParseComments)
	if err != nil {
		return cue.Value{}, err
	}
	dropUnusedImports(f)
	inst := build.NewContext().NewInstance("template", nil)
	if err := inst.AddSyntax(f); err != nil {
		return cue.Value{}, err
	}
	seen := map[string]*build.Instance{}
	for spec := range f.ImportSpecs() {
		path := importPath(spec)
		if _, ok := reg.Package(path); !ok {
			continue // a standard-library package, resolved by CUE itself
		}
		pkg, err := packageInstance(reg, path, seen)
		if err != nil {
			return cue.Value{}, err
		}
		inst.Imports = append(inst.Imports, pkg)
	}
	v := ctx.BuildInstance(inst)
	// Only real errors count: what depends on the parameter or on actions' results is
	// incomplete until the step is evaluated.
	if err := v.Validate(); err != nil {
		return cue.Value{}, err
	}
	return v, nil
}

// packageInstance builds the instance of a supplied package and, recursively, of the supplied
// packages it imports.
func packageInstance(reg *Registry, path string, seen map[string]*build.Instance) (*build.Instance, error) {
	if inst, ok := seen[path]; ok {
		return inst, nil
	}
	p, _ := reg.Package(path)
	f, err := parser.ParseFile(path+".cue", p.Source, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", path, err)
	}
	inst := build.NewContext().NewInstance(path, nil)
	inst.ImportPath = path
	inst.PkgName = path[strings.LastIndex(path, "/")+1:]
	if err := inst.AddSyntax(f); err != nil {
		return nil, fmt.Errorf("package %s: %w", path, err)
	}
	seen[path] = inst
	for spec := range f.ImportSpecs() {
		sub := importPath(spec)
		if _, ok := reg.Package(sub); !ok {
			continue
		}
		dep, err := packageInstance(reg, sub, seen)
		if err != nil {
			return nil, err
		}
		inst.Imports = append(inst.Imports, dep)
	}
	return inst, nil
}

func importPath(spec *ast.ImportSpec) string {
	return strings.Trim(spec.Path.Value, "\"`")
}

// dropUnusedImports removes the import specs whose name is never referenced in the file.
func dropUnusedImports(f *ast.File) {
	used := map[string]bool{}
	ast.Walk(f, func(n ast.Node) bool {
		if _, ok := n.(*ast.ImportDecl); ok {
			return false
		}
		if id, ok := n.(*ast.Ident); ok {
			used[id.Name] = true
		}
		return true
	}, nil)
	for _, decl := range f.Decls {
		imp, ok := decl.(*ast.ImportDecl)
		if !ok {
			continue
		}
		kept := imp.Specs[:0]
		for _, spec := range imp.Specs {
			name := importName(spec)
			if used[name] {
				kept = append(kept, spec)
			}
		}
		imp.Specs = kept
	}
	var decls []ast.Decl
	for _, decl := range f.Decls {
		if imp, ok := decl.(*ast.ImportDecl); ok && len(imp.Specs) == 0 {
			continue
		}
		decls = append(decls, decl)
	}
	f.Decls = decls
}

// importName is the identifier an import is referred to by.
func importName(spec *ast.ImportSpec) string {
	if spec.Name != nil {
		return spec.Name.Name
	}
	path := importPath(spec)
	if i := strings.Index(path, ":"); i >= 0 {
		return path[i+1:]
	}
	return path[strings.LastIndex(path, "/")+1:]
}
