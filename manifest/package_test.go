package manifest

import (
	"strings"
	"testing"
)

func TestPackageDecodes(t *testing.T) {
	objs, err := Decode("p.yaml", []byte(`apiVersion: cue.oam.dev/v1alpha1
kind: Package
metadata: {name: my, annotations: {provider.stepflow.dev/reads: get}}
spec:
  path: ext/my
  provider: {protocol: http, endpoint: "http://127.0.0.1:8090"}
  templates: {my.cue: "package my\n"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Packages) != 1 {
		t.Fatalf("packages %v", objs.Packages)
	}
	p := objs.Packages[0]
	if p.Namespace != DefaultNamespace || p.Spec.Path != "ext/my" || p.Spec.Provider.Endpoint != "http://127.0.0.1:8090" || p.Spec.Templates["my.cue"] != "package my\n" {
		t.Errorf("decoded %+v", p)
	}
}

func TestPackageDecodingIsStrict(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"kind: Package\napiVersion: cue.oam.dev/v1alpha1\nmetadata: {name: my}\nspec: {path: ext/my, provider: {protocol: http, endpoint: x, url: y}}\n",
			"p.yaml:4:62: spec.provider.url: unknown field"},
		{"kind: Package\napiVersion: cue.oam.dev/v1alpha1\nmetadata: {}\nspec: {path: ext/my}\n",
			"a Package needs a name"},
		{"kind: Package\napiVersion: core.oam.dev/v1beta1\nmetadata: {name: my}\n",
			"kind Package is read as apiVersion cue.oam.dev/v1alpha1"},
	} {
		_, err := Decode("p.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%q) = %v, want %q", tc.doc, err, tc.want)
		}
	}
}
