package cluster_test

import (
	"slices"
	"testing"

	"github.com/stepflow/stepflow/cluster"
)

// A kubeconfig that runs commands or reads files on the host names each field that does; one
// with everything inline names none.
func TestHostAccessNamesCommandsAndFiles(t *testing.T) {
	const risky = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://10.0.0.1", certificate-authority: /etc/ca.pem}
users:
- name: plugin
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ["-c", "id"], interactiveMode: Never}
- name: gcp
  user:
    auth-provider: {name: gcp, config: {cmd-path: /bin/sh}}
- name: files
  user: {client-certificate: /etc/cert.pem, client-key: /etc/key.pem, tokenFile: /etc/token}
contexts:
- name: c
  context: {cluster: c, user: plugin}
current-context: c
`
	got, err := cluster.HostAccess([]byte(risky))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"clusters[name=c].cluster.certificate-authority",
		"users[name=files].user.client-certificate",
		"users[name=files].user.client-key",
		"users[name=files].user.tokenFile",
		"users[name=gcp].user.auth-provider",
		"users[name=plugin].user.exec",
	}
	if !slices.Equal(got, want) {
		t.Errorf("HostAccess:\n got %q\nwant %q", got, want)
	}
	const inline = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://10.0.0.1", certificate-authority-data: Zm9v}
users:
- name: u
  user: {token: abc, client-certificate-data: Zm9v, client-key-data: Zm9v}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`
	if got, err := cluster.HostAccess([]byte(inline)); err != nil || len(got) != 0 {
		t.Errorf("an inline kubeconfig: %q, %v", got, err)
	}
	if _, err := cluster.HostAccess([]byte("clusters: 3")); err == nil {
		t.Error("a document that is not a kubeconfig passed")
	}
}
