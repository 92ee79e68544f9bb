package kube_test

import (
	"context"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/kubetest"
	"github.com/stepflow/stepflow/store/kube"
	"github.com/stepflow/stepflow/store/storetest"
)

var cluster *kubetest.Cluster

func TestMain(m *testing.M) { kubetest.Main(m, &cluster) }

func newClient(t *testing.T) client.Client {
	t.Helper()
	if cluster == nil {
		t.Skip("needs kube-apiserver and etcd (not in -short mode)")
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cluster.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var namespaces sync.Map

func ensureNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	if _, done := namespaces.LoadOrStore(name, true); done {
		return
	}
	err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// The store passes the suite every engine.Store passes, on a real API server.
func TestStoreSuite(t *testing.T) {
	c := newClient(t)
	storetest.Run(t, func(t *testing.T) engine.Store {
		for _, ns := range []string{"round", "cas", "missing", "elsewhere", "logs", "concurrent", "race"} {
			ensureNamespace(t, c, ns)
		}
		return kube.New(kube.Options{Client: c})
	})
}
