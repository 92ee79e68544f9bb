package web_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/web"
)

// TestJavaScriptUnits runs the unit tests of the dashboard's JavaScript, jstest/*.test.js, with
// Node's built-in test runner (no npm packages). They test what needs no browser: the YAML
// writer, the graph's model and layout, the formatting helpers, and the run page's logic and
// event-stream handling. Without node on PATH the test is skipped.
func TestJavaScriptUnits(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: the dashboard's JavaScript unit tests (web/jstest) are skipped; install Node.js 20 or later to run them")
	}
	files, err := filepath.Glob(filepath.Join("jstest", "*.test.js"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no JavaScript tests found in jstest/*.test.js")
	}
	readInputs(t)

	args := append([]string{"--test", "--test-reporter=tap"}, files...)
	cmd := exec.CommandContext(t.Context(), node, args...)
	// The tests show times in UTC wherever they run; no colours in the output kept below.
	cmd.Env = append(os.Environ(), "TZ=UTC", "NO_COLOR=1", "FORCE_COLOR=0")
	out, err := cmd.CombinedOutput()
	n := tapCounts(out)
	switch {
	case err != nil:
		t.Fatalf("node --test failed (%v):\n%s", err, out)
	case n["fail"] > 0 || n["cancelled"] > 0:
		t.Fatalf("node --test: %d failed, %d cancelled:\n%s", n["fail"], n["cancelled"], out)
	case n["pass"] == 0:
		t.Fatalf("node --test ran no test:\n%s", out)
	}
	t.Logf("node --test: %d tests in %d files, %d passed, %d skipped", n["tests"], len(files), n["pass"], n["skipped"]+n["todo"])
}

var tapCount = regexp.MustCompile(`(?m)^# (tests|pass|fail|cancelled|skipped|todo) (\d+)\s*$`)

// tapCounts reads the totals Node's TAP reporter ends with ("# pass 57", "# fail 0").
func tapCounts(out []byte) map[string]int {
	n := map[string]int{}
	for _, m := range tapCount.FindAllSubmatch(out, -1) {
		v, _ := strconv.Atoi(string(m[2]))
		n[string(m[1])] = v
	}
	return n
}

// readInputs reads every file the JavaScript tests load. go test caches a passing result
// against the files the test binary opens, not those node opens: without this, a change to a
// module would be answered with the cached "ok" of the code before it.
func readInputs(t *testing.T) {
	t.Helper()
	if _, err := os.ReadFile("package.json"); err != nil {
		t.Fatalf("package.json, which makes Node read the dashboard's files as ES modules: %v", err)
	}
	for _, dir := range []string{"jstest", filepath.Join("static", "js"), filepath.Join("static", "vendor")} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".js") {
				return err
			}
			_, err = os.ReadFile(p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The JavaScript tests and Node's package.json stay out of the served files: they are beside
// static/, which web.go embeds, not in it.
func TestTestsNotServed(t *testing.T) {
	err := fs.WalkDir(web.Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(p, ".test.js") || path.Base(p) == "package.json" {
			t.Errorf("%s is embedded and served; tests belong in web/jstest", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
