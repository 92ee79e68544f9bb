package cluster

import (
	"fmt"
	"slices"

	"k8s.io/client-go/tools/clientcmd"
)

// HostAccess lists what a kubeconfig would have the process that uses it do on its own host:
// run a command (a user's exec credential plugin or auth-provider) or read a local file (a
// cluster's certificate-authority, a user's client-certificate, client-key or tokenFile, all
// paths), each as the field that asks for it, sorted: `users[name=ci].user.exec`. It is empty
// for a kubeconfig that carries everything inline (certificate data, tokens). A document
// that is not a kubeconfig is an error.
func HostAccess(kubeconfig []byte) ([]string, error) {
	kc, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("not a kubeconfig: %w", err)
	}
	var out []string
	for name, c := range kc.Clusters {
		if c.CertificateAuthority != "" {
			out = append(out, fmt.Sprintf("clusters[name=%s].cluster.certificate-authority", name))
		}
	}
	for name, u := range kc.AuthInfos {
		field := func(f string) string { return fmt.Sprintf("users[name=%s].user.%s", name, f) }
		if u.Exec != nil {
			out = append(out, field("exec"))
		}
		if u.AuthProvider != nil {
			out = append(out, field("auth-provider"))
		}
		if u.ClientCertificate != "" {
			out = append(out, field("client-certificate"))
		}
		if u.ClientKey != "" {
			out = append(out, field("client-key"))
		}
		if u.TokenFile != "" {
			out = append(out, field("tokenFile"))
		}
	}
	slices.Sort(out)
	return out, nil
}
