// Package charts holds the tests (test only) of the Helm chart charts/stepflow: helm lint and
// helm template with the default and the server's values, with helm built from its Go module
// (scripts/helm.sh); the rendered chart applied to a real kube-apiserver (apiservertest); and
// the controller started with the arguments the chart gives it, as the chart's ServiceAccount,
// running a WorkflowRun to success.
package charts
