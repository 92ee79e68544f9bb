package main

import (
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

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
