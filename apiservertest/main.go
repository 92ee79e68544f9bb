package apiservertest

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// Main is the TestMain of a package whose tests need API servers: it starts one for each
// pointer given and sets it, runs the tests, stops the servers and exits with the tests' code.
// Under -short it starts none and leaves the pointers nil, and the tests that need them skip.
func Main(m *testing.M, clusters ...**Cluster) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	var started []*Cluster
	stop := func() {
		for _, c := range started {
			_ = c.Stop()
		}
	}
	for _, p := range clusters {
		c, err := Start()
		if err != nil {
			stop()
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		started = append(started, c)
		*p = c
	}
	code := m.Run()
	stop()
	os.Exit(code)
}
