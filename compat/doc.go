// Package compat is stepflow's KubeVela compatibility suite. It holds no code: its test runs
// the cases of testdata/*.txtar, each a KubeVela behaviour named by a row of
// docs/kubevela-compatibility.md, on a real API server, in Kubernetes mode (the controller)
// and in embedded mode (the engine over SQLite, as `stepflow run` and the server use it).
package compat
