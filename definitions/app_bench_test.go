package definitions_test

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	app "github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/manifest"
)

// The benchmark Application: a webservice with scaler and gateway traits, rendered for
// one cluster, then judged against ready objects.
const benchApp = `
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: shop}
spec:
  components:
  - name: frontend
    type: webservice
    properties: {image: nginx, ports: [{port: 80, expose: true}]}
    traits:
    - {type: scaler, properties: {replicas: 2}}
    - {type: gateway, properties: {domain: shop.example.com, http: {"/": 80}}}
`

func BenchmarkRenderWebserviceScalerGateway(b *testing.B) {
	objs, err := manifest.Decode("bench.yaml", []byte(benchApp))
	if err != nil {
		b.Fatal(err)
	}
	req := app.Request{App: objs.Applications[0], Definitions: builtinSet(), Target: app.Target{Cluster: "east"}}
	for b.Loop() {
		if _, err := app.Render(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHealthWebserviceScalerGateway(b *testing.B) {
	objs, err := manifest.Decode("bench.yaml", []byte(benchApp))
	if err != nil {
		b.Fatal(err)
	}
	set := builtinSet()
	comps, err := app.Render(context.Background(), app.Request{App: objs.Applications[0], Definitions: set})
	if err != nil {
		b.Fatal(err)
	}
	live := func(r *unstructured.Unstructured) *unstructured.Unstructured {
		o := r.DeepCopy()
		switch o.GetKind() {
		case "Deployment":
			o.SetGeneration(1)
			o.Object["status"] = map[string]any{"observedGeneration": int64(1), "replicas": int64(2), "readyReplicas": int64(2), "updatedReplicas": int64(2)}
		case "Ingress":
			o.Object["status"] = map[string]any{"loadBalancer": map[string]any{"ingress": []any{map[string]any{"ip": "203.0.113.5"}}}}
		}
		return o
	}
	for b.Loop() {
		st, err := app.Health(context.Background(), set, "default", comps[0], live)
		if err != nil || !st.Healthy || !st.Traits[1].Healthy {
			b.Fatalf("%+v %v", st, err)
		}
	}
}
