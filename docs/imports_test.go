// Package docs_test keeps docs/ARCHITECTURE.md true: its import table must say exactly what each
// package imports of stepflow, and what it must never reach.
package docs_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/stepflow/stepflow/"

// rule is one row of the import table.
type rule struct {
	imports []string // of stepflow, relative to the module
	never   []string // import-path prefixes not to be reached, even indirectly
}

// readTable reads the rows between the imports markers of ARCHITECTURE.md.
func readTable(t *testing.T) map[string]rule {
	t.Helper()
	data, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(data, []byte("<!-- imports:begin -->"))
	table, _, ok2 := bytes.Cut(rest, []byte("<!-- imports:end -->"))
	if !ok || !ok2 {
		t.Fatal("ARCHITECTURE.md: no <!-- imports:begin --> ... <!-- imports:end --> table")
	}
	rules := map[string]rule{}
	sc := bufio.NewScanner(bytes.NewReader(table))
	for line := 0; sc.Scan(); line++ {
		cells := strings.Split(strings.Trim(strings.TrimSpace(sc.Text()), "|"), "|")
		if len(cells) != 3 || strings.Contains(cells[0], "---") || strings.TrimSpace(cells[0]) == "package" {
			continue
		}
		pkgs := names(cells[0])
		if len(pkgs) != 1 {
			t.Fatalf("ARCHITECTURE.md import table: row %q names %d packages", sc.Text(), len(pkgs))
		}
		if _, dup := rules[pkgs[0]]; dup {
			t.Errorf("ARCHITECTURE.md import table: %s has two rows", pkgs[0])
		}
		rules[pkgs[0]] = rule{imports: names(cells[1]), never: names(cells[2])}
	}
	if len(rules) == 0 {
		t.Fatal("ARCHITECTURE.md: the import table has no rows")
	}
	return rules
}

// names are the back-quoted names of a cell, sorted; "—" is none.
func names(cell string) []string {
	var out []string
	for i, part := range strings.Split(cell, "`") {
		if i%2 == 1 {
			out = append(out, part)
		}
	}
	slices.Sort(out)
	return out
}

// pkg is what go list says of one package.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportTableIsTrue(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to list the packages with")
	}
	rules := readTable(t)
	seen := map[string]bool{}
	for _, p := range listPackages(t) {
		name := strings.TrimPrefix(p.ImportPath, module)
		if name == "docs" {
			continue // this test's own package
		}
		seen[name] = true
		r, ok := rules[name]
		if !ok {
			t.Errorf("package %s has no row in the import table of ARCHITECTURE.md", name)
			continue
		}
		var own []string
		for _, imp := range p.Imports {
			if rest, ok := strings.CutPrefix(imp, module); ok {
				own = append(own, rest)
			}
		}
		slices.Sort(own)
		if !slices.Equal(own, r.imports) {
			t.Errorf("%s imports %v of stepflow; ARCHITECTURE.md says %v", name, own, r.imports)
		}
		for _, dep := range p.Deps {
			for _, banned := range r.never {
				if strings.HasPrefix(dep, banned) {
					t.Errorf("%s reaches %s, which ARCHITECTURE.md says it never does (%s)", name, dep, banned)
				}
			}
		}
	}
	for name := range rules {
		if !seen[name] {
			t.Errorf("ARCHITECTURE.md's import table has a row for %s, which is no package", name)
		}
	}
}
