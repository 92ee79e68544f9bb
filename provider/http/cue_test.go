package http_test

import (
	"testing"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"

	"github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/step"
)

// compiled is the supplied vela/http source compiled, with the context that compiled it: what
// is evaluated in its scope must be compiled in the same context.
type compiled struct {
	ctx   *cue.Context
	value cue.Value
}

// pkg compiles the supplied vela/http source.
func pkg(t *testing.T) compiled {
	t.Helper()
	r := step.NewRegistry()
	http.Register(r, http.Options{})
	p, _ := r.Package("vela/http")
	ctx := cuecontext.New()
	v := ctx.CompileString(p.Source, cue.Filename("vela/http"))
	if err := v.Err(); err != nil {
		t.Fatalf("vela/http does not compile: %v", err)
	}
	return compiled{ctx: ctx, value: v}
}

// use evaluates expr (a CUE expression over the package's definitions) in the package.
func use(t *testing.T, pkg compiled, expr string) (cue.Value, error) {
	t.Helper()
	v := pkg.ctx.CompileString("x: "+expr, cue.Scope(pkg.value))
	x := v.LookupPath(cue.ParsePath("x"))
	if err := v.Err(); err != nil {
		return x, err
	}
	return x, x.Validate()
}

func TestFixedMethodFormsSendTheirMethod(t *testing.T) {
	p := pkg(t)
	for def, want := range map[string]string{
		"#HTTPDo": "GET", "#HTTPGet": "GET", "#HTTPPost": "POST", "#HTTPPut": "PUT", "#HTTPDelete": "DELETE",
	} {
		x, err := use(t, p, def+` & {$params: url: "http://example.com"}`)
		if err != nil {
			t.Fatalf("%s: %v", def, err)
		}
		got, err := x.LookupPath(cue.ParsePath("$params.method")).String()
		if err != nil || got != want {
			t.Errorf("%s sends %q (%v), want %s", def, got, err, want)
		}
		if prov, _ := x.LookupPath(cue.MakePath(cue.Def("provider"))).String(); prov != "http" {
			t.Errorf("%s: #provider = %q", def, prov)
		}
		if do, _ := x.LookupPath(cue.MakePath(cue.Def("do"))).String(); do != "do" {
			t.Errorf("%s: #do = %q", def, do)
		}
	}
	if _, err := use(t, p, `#HTTPPost & {$params: {url: "http://example.com", method: "GET"}}`); err == nil {
		t.Error("#HTTPPost accepted method GET")
	}
}

func TestDefinitionsWrittenForKubeVelaBuild(t *testing.T) {
	p := pkg(t)
	// The request shapes of KubeVela's published definitions, and the header lists stepflow adds.
	for _, expr := range []string{
		`#HTTPDo & {$params: {method: "POST", url: "http://x", request: {body: "{}", header: {"Content-Type": "application/json"}, timeout: "5s"}}}`,
		`#HTTPDo & {$params: {url: "http://x", request: {header: {Accept: ["a", "b"]}, trailer: {T: "v"}}}}`,
		`#HTTPGet & {$params: {url: "http://x", request: ratelimiter: {limit: 3, period: "1m"}}}`,
		`#HTTPDo & {$params: {url: "http://x", tls_config: {secret: "certs", namespace: "default"}}}`,
		`#HTTPDo & {$params: {url: "http://x"}, $returns: {body: "", statusCode: 200, header: {A: ["1"]}}}`,
		`#HTTPDo & {$params: {url: "http://x", request: {somethingNew: 1}}}`,
		`#HTTPDo & {$params: {url: "http://x", request: headersFromSecret: [{header: "Authorization", secret: "api", key: "token"}]}}`,
		`#HTTPDo & {$params: {url: "http://x", request: headersFromSecret: [{name: "Authorization", secret: "api", key: "token"}]}}`,
		// The spelling (header, secretRef: {name, key}) beside KubeVela's provider's.
		`#HTTPDo & {$params: {url: "http://x", request: headersFromSecret: [{header: "A", secretRef: {name: "s", key: "k"}}]}}`,
	} {
		if _, err := use(t, p, expr); err != nil {
			t.Errorf("%s: %v", expr, err)
		}
	}
	for _, expr := range []string{
		`#HTTPDo & {$params: {url: "http://x", method: "BREW"}}`,
		`#HTTPDo & {$params: {url: "http://x", unknown: 1}}`,
		`#HTTPDo & {$params: {url: "http://x"}, $returns: {body: "", statusCode: 200, header: null}}`,
		`#HTTPDo & {$params: {url: "http://x", request: headersFromSecret: [{header: "A", secret: "s", key: "k", secretRef: {name: "s", key: "k"}}]}}`,
	} {
		if _, err := use(t, p, expr); err == nil {
			t.Errorf("%s: accepted, want an error", expr)
		}
	}
}
