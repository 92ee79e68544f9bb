package apiservertest_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/apiservertest"
)

// The API server serves stepflow's CRDs and kubectl can reach it with the written kubeconfig.
func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver and etcd")
	}
	c, err := apiservertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	}()
	scheme := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := cl.Get(context.Background(), client.ObjectKey{Name: "workflowruns.core.oam.dev"}, &crd); err != nil {
		t.Fatalf("WorkflowRun CRD not installed: %v", err)
	}
	if got := crd.Spec.Names.ShortNames; len(got) != 1 || got[0] != "wr" {
		t.Errorf("short names = %v, want [wr]", got)
	}
	out, err := exec.CommandContext(t.Context(), filepath.Join(apiservertest.AssetsDir(), "kubectl"), "--kubeconfig", c.Kubeconfig, "get", "wr", "-A").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No resources found") {
		t.Fatalf("kubectl get wr: %v\n%s", err, out)
	}
}
