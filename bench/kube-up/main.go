// Command kube-up starts the tests' kube-apiserver and etcd (package apiservertest) with stepflow's
// CRDs, writes an administrator's kubeconfig to the path given, and serves until interrupted:
// the cluster ../shared/bench/wr-bench.sh and manual trials run against.
//
//	go run ./bench/kube-up /tmp/kubeconfig &
//	stepflow controller --kubeconfig /tmp/kubeconfig &
//	KUBECONFIG=/tmp/kubeconfig ../shared/bench/wr-bench.sh 200
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/stepflow/stepflow/apiservertest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kube-up KUBECONFIG-PATH")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "kube-up:", err)
		os.Exit(1)
	}
}

func run(path string) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := apiservertest.Start()
	if err != nil {
		return err
	}
	defer func() {
		if serr := c.Stop(); err == nil {
			err = serr
		}
	}()
	data, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	fmt.Printf("kube-apiserver %s is up; kubeconfig: %s\n", apiservertest.KubernetesVersion, path)
	<-ctx.Done()
	return nil
}
