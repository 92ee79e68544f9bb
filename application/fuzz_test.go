package application_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
)

// Whatever properties and trait properties a user sends, Render returns objects or an error;
// it does not crash, and neither does CheckProperties.
func FuzzRenderProperties(f *testing.F) {
	f.Add(`{"image":"a"}`, `{"replicas":2}`)
	f.Add(`{"image":"a","replicas":"x"}`, `{}`)
	f.Add(`[]`, `null`)
	f.Add(`{"image":"a\/b\u00e9","env":[{"name":1}]}`, `{"replicas":1.5}`)
	set := application.NewSet().Add([]*v1beta1.ComponentDefinition{component("base", base)},
		[]*v1beta1.TraitDefinition{trait("t", `parameter: replicas: *1 | int
patch: spec: replicas: parameter.replicas`)}, nil)
	f.Fuzz(func(t *testing.T, props, tprops string) {
		app := &v1beta1.Application{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team"},
			Spec: v1beta1.ApplicationSpec{Components: []v1beta1.ApplicationComponent{{
				Name: "api", Type: "base", Properties: raw(props), Traits: []v1beta1.ApplicationTrait{{Type: "t", Properties: raw(tprops)}},
			}}}}
		comps, err := application.Render(context.Background(), application.Request{App: app, Definitions: set})
		if err == nil && comps[0].Workload == nil {
			t.Fatal("no error and no workload")
		}
		_ = application.CheckProperties(base, []byte(props), nil)
	})
}
