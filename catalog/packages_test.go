package catalog_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/step"
)

const goodPackage = `apiVersion: cue.oam.dev/v1alpha1
kind: Package
metadata: {name: my, namespace: vela-system}
spec:
  path: ext/my
  provider: {protocol: http, endpoint: "http://127.0.0.1:8090"}
  templates:
    my.cue: |
      package my

      #Echo: {
      	#do:       "echo"
      	#provider: "my"
      	$params: text: string
      	$returns?: text: string
      }
---
apiVersion: core.oam.dev/v1beta1
kind: WorkflowStepDefinition
metadata: {name: echo}
spec:
  schematic:
    cue:
      template: |
        import "ext/my"

        parameter: text: string
        echo: my.#Echo & {$params: text: parameter.text}
---
apiVersion: core.oam.dev/v1alpha1
kind: WorkflowRun
metadata: {name: r}
spec:
  workflowSpec:
    steps:
    - {name: a, type: echo, properties: {text: hi}}
`

func writeFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// A definition importing a Package of the same files compiles with it, and its steps are
// checked against it; the template the runtime gets carries the package.
func TestPackagesOfTheFilesAreImported(t *testing.T) {
	if got := vet(t, writeFile(t, goodPackage)); got != "" {
		t.Fatalf("vet: %s", got)
	}
	objs, err := manifest.DecodeFiles(writeFile(t, goodPackage))
	if err != nil {
		t.Fatal(err)
	}
	c := catalog.New(nil, engine.Limits{})
	src, err := c.Template(catalog.WithObjects(context.Background(), objs), "default", "echo")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, pkgs := step.Unbundle(src)
	if !strings.Contains(tmpl, `import "ext/my"`) || len(pkgs) != 1 || pkgs[0].Name != "my" || pkgs[0].Endpoint != "http://127.0.0.1:8090" {
		t.Fatalf("template %q with packages %+v", tmpl, pkgs)
	}
	// A property the action's schema refuses is reported by vet, at its path.
	bad := strings.Replace(goodPackage, "properties: {text: hi}", "properties: {text: 3}", 1)
	if got := vet(t, writeFile(t, bad)); !strings.Contains(got, "spec.workflowSpec.steps[0].properties: Invalid value: \"\": step a: parameter.text: conflicting values string and 3") {
		t.Errorf("vet of a wrong property: %q", got)
	}
}

func TestVetChecksPackages(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"endpoint not a URL", `"http://127.0.0.1:8090"`, `"ftp://x"`, `spec.provider.endpoint: Invalid value: "ftp://x": scheme "ftp": want http or https`},
		{"protocol", "protocol: http,", "protocol: grpc,", `spec.provider.protocol: Unsupported value: "grpc"`},
		{"no path", "path: ext/my", "path: ''", "spec.path: Required value"},
		{"a standard library path", "path: ext/my", "path: strings/my", "spec.path: Invalid value"},
		{"CUE that does not parse", `#Echo: {`, `#Echo: {{`, "spec.templates: Invalid value: \"(CUE)\": Package my: package ext/my (Package my): ext/my/my.cue:8:3: expected"},
		{"CUE that does not compile", `package my`, "package my\n      x: 1\n      x: 2", "spec.templates: Invalid value: \"(CUE)\": Package my: ext/my/my.cue:3:4: x: conflicting values 2 and 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(goodPackage, tc.from, tc.to, 1)
			got := vet(t, writeFile(t, src))
			if !strings.Contains(got, tc.want) || !strings.Contains(got, "objects.yaml:") {
				t.Errorf("vet = %q, want it to say %q at a file position", got, tc.want)
			}
		})
	}
}

// packageStore is a catalog.Store holding Packages too, as the SQL stores do.
type packageStore struct {
	store
	pkgs map[string][]*cuev1alpha1.Package
}

func (s *packageStore) Packages(_ context.Context, ns string) ([]*cuev1alpha1.Package, error) {
	return s.pkgs[ns], nil
}

// Stored Packages are found from the run's namespace, then vela-system's.
func TestStoredPackagesBundled(t *testing.T) {
	pkg := func(ns, endpoint string) *cuev1alpha1.Package {
		p := &cuev1alpha1.Package{Spec: cuev1alpha1.PackageSpec{Path: "ext/my", Templates: map[string]string{"my.cue": "package my\n"},
			Provider: &cuev1alpha1.Provider{Protocol: "http", Endpoint: endpoint}}}
		p.Name, p.Namespace = "my", ns
		return p
	}
	st := &packageStore{
		store: store{defs: map[string]string{"vela-system/t": "import \"ext/my\"\nx: my\n"}},
		pkgs:  map[string][]*cuev1alpha1.Package{"team": {pkg("team", "http://team")}, "vela-system": {pkg("vela-system", "http://system")}},
	}
	c := catalog.New(st, engine.Limits{})
	for ns, want := range map[string]string{"team": "http://team", "other": "http://system"} {
		src, err := c.Template(context.Background(), ns, "t")
		if err != nil {
			t.Fatal(err)
		}
		if _, pkgs := step.Unbundle(src); len(pkgs) != 1 || pkgs[0].Endpoint != want {
			t.Errorf("from %s: packages %+v, want the one at %s", ns, pkgs, want)
		}
	}
	list, err := c.Packages(context.Background(), "team")
	if err != nil || len(list) != 1 || list[0].Namespace != "team" {
		t.Errorf("Packages(team) = %v, %v; want team's only (vela-system's has the same path)", list, err)
	}
}

// BenchmarkTemplateBuiltin is the look-up of a built-in step type, which every evaluation of
// a step makes: with bundling, its imports are read (none is a Package's) and nothing else.
func BenchmarkTemplateBuiltin(b *testing.B) {
	c := catalog.New(nil, engine.Limits{})
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Template(ctx, "default", "apply-object"); err != nil {
			b.Fatal(err)
		}
	}
}
