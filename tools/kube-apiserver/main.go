// Command kube-apiserver builds the Kubernetes API server from its published
// Go modules, so that stepflow's tests can start a real API server without
// downloading a release binary. It adds nothing of its own: it runs the
// upstream command as-is.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
