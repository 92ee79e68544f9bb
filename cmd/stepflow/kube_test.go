package main

import (
	"context"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/apiservertest"
)

// scriptCluster is one kube-apiserver shared by the scripts that ask for it, started by the
// first of them and stopped when the scripts are done.
type scriptCluster struct {
	once sync.Once
	c    *apiservertest.Cluster
	err  error
}

func (s *scriptCluster) stop() {
	if s.c != nil {
		_ = s.c.Stop()
	}
}

// cmdKube starts the shared API server (once) and sets $KUBECONFIG_FILE to an administrator's
// kubeconfig for it: kube. A script using it starts with `[short] skip`.
func (s *scriptCluster) cmdKube(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: kube")
	}
	if testing.Short() {
		ts.Fatalf("kube starts kube-apiserver: put [short] skip before it")
	}
	s.once.Do(func() { s.c, s.err = apiservertest.Start() })
	if s.err != nil {
		ts.Fatalf("starting kube-apiserver: %v", s.err)
	}
	ts.Setenv("KUBECONFIG_FILE", s.c.Kubeconfig)
}

// cmdKready keeps the Deployments in the namespaces ready, and gives Ingresses an address, until
// the script ends (apiservertest.KeepReady, a stand-in for kube-controller-manager and an
// ingress controller): kready NAMESPACE...
func (s *scriptCluster) cmdKready(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 || s.c == nil {
		ts.Fatalf("usage: kready NAMESPACE... (after kube)")
	}
	c, err := client.New(s.c.Config, client.Options{})
	if err != nil {
		ts.Fatalf("client: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		apiservertest.KeepReady(ctx, c, args...)
	}()
	ts.Defer(func() { cancel(); <-done })
}
