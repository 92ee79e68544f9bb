package cluster_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/engine"
)

// hub is the cluster the registry runs in; spoke is a second API server it reaches by name.
var hub, spoke *apiservertest.Cluster

func TestMain(m *testing.M) { apiservertest.Main(m, &hub, &spoke) }

func needClusters(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts kube-apiservers")
	}
}

func direct(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clustersFile writes a kubeconfig whose contexts are the given names, each reaching cfg.
func clustersFile(t *testing.T, contexts map[string]*rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	for name, cfg := range contexts {
		kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	path := filepath.Join(t.TempDir(), "clusters")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "https://" + addr
}

func ensureNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
}

// spokeSecret writes a cluster Secret in the hub's vela-system reaching the spoke.
func spokeSecret(t *testing.T, hubClient client.Client, name string, data map[string][]byte, credType string) *corev1.Secret {
	t.Helper()
	ensureNamespace(t, hubClient, "vela-system")
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "vela-system", Labels: map[string]string{cluster.LabelCredentialType: credType}},
		Data:       data,
	}
	if err := hubClient.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hubClient.Delete(context.Background(), s) })
	return s
}

// spokeNamespaceUID tells which API server a client reaches: each has its own default namespace.
func namespaceUID(t *testing.T, c client.Client) string {
	t.Helper()
	var ns corev1.Namespace
	if err := c.Get(context.Background(), client.ObjectKey{Name: "default"}, &ns); err != nil {
		t.Fatal(err)
	}
	return string(ns.UID)
}

func TestLocalAndFileClustersReachTheirAPIServers(t *testing.T) {
	needClusters(t)
	ctx := context.Background()
	reg := cluster.New(hub.Config, cluster.Options{File: clustersFile(t, map[string]*rest.Config{"spoke": spoke.Config}), QPS: 42, Burst: 84})
	hubUID, spokeUID := namespaceUID(t, direct(t, hub.Config)), namespaceUID(t, direct(t, spoke.Config))
	for name, want := range map[string]string{"": hubUID, "local": hubUID, "spoke": spokeUID} {
		c, err := reg.Client(ctx, name)
		if err != nil {
			t.Fatalf("Client(%q): %v", name, err)
		}
		if got := namespaceUID(t, c); got != want {
			t.Errorf("Client(%q) reaches the wrong API server", name)
		}
		again, _ := reg.Client(ctx, name)
		if again != c {
			t.Errorf("Client(%q) is not cached", name)
		}
		cfg, err := reg.Config(ctx, name)
		if err != nil || cfg.QPS != 42 || cfg.Burst != 84 {
			t.Errorf("Config(%q): QPS %v burst %v, err %v; want 42, 84", name, cfg.QPS, cfg.Burst, err)
		}
	}
	names, err := reg.Names(ctx)
	if err != nil || strings.Join(names, ",") != "spoke" {
		t.Errorf("Names = %v, %v; want [spoke]", names, err)
	}
}

func TestClusterSecretsAreReadAndFollowed(t *testing.T) {
	needClusters(t)
	ctx := context.Background()
	hubClient := direct(t, hub.Config)
	spokeUID := namespaceUID(t, direct(t, spoke.Config))
	x509 := spokeSecret(t, hubClient, "spoke-x509", map[string][]byte{
		cluster.KeyEndpoint: []byte(spoke.Config.Host),
		cluster.KeyCA:       spoke.Config.CAData,
		cluster.KeyCert:     spoke.Config.CertData,
		cluster.KeyKey:      spoke.Config.KeyData,
	}, "X509Certificate")
	kubeconfig, err := os.ReadFile(spoke.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	spokeSecret(t, hubClient, "spoke-kubeconfig", map[string][]byte{cluster.KeyKubeconfig: kubeconfig}, "X509Certificate")
	// A Secret without the label is not a cluster.
	plain := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "not-a-cluster", Namespace: "vela-system"}, Data: map[string][]byte{cluster.KeyKubeconfig: kubeconfig}}
	if err := hubClient.Create(ctx, plain); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hubClient.Delete(context.Background(), plain) })

	reg := cluster.New(hub.Config, cluster.Options{Secrets: hubClient})
	for _, name := range []string{"spoke-x509", "spoke-kubeconfig"} {
		c, err := reg.Client(ctx, name)
		if err != nil {
			t.Fatalf("Client(%q): %v", name, err)
		}
		if namespaceUID(t, c) != spokeUID {
			t.Errorf("Client(%q) does not reach the spoke", name)
		}
	}
	var te *engine.TerminalError
	if _, err := reg.Client(ctx, "not-a-cluster"); !errors.As(err, &te) {
		t.Errorf("a Secret without %s is a cluster: %v", cluster.LabelCredentialType, err)
	}
	names, err := reg.Names(ctx)
	if err != nil || strings.Join(names, ",") != "spoke-kubeconfig,spoke-x509" {
		t.Errorf("Names = %v, %v", names, err)
	}

	// The Secret changes: the next lookup builds a client from the new content.
	first, _ := reg.Client(ctx, "spoke-x509")
	moved := closedPort(t)
	x509.Data[cluster.KeyEndpoint] = []byte(moved)
	if err := hubClient.Update(ctx, x509); err != nil {
		t.Fatal(err)
	}
	cfg, err := reg.Config(ctx, "spoke-x509")
	if err != nil || cfg.Host != moved {
		t.Fatalf("after the Secret changed, host = %q (%v), want %s", cfg.Host, err, moved)
	}
	second, err := reg.Client(ctx, "spoke-x509")
	if err != nil || second == first {
		t.Errorf("the client was not rebuilt after the Secret changed (%v)", err)
	}
}

func TestUnknownClusterIsTerminalAndSaysWhereClustersComeFrom(t *testing.T) {
	needClusters(t)
	reg := cluster.New(hub.Config, cluster.Options{File: clustersFile(t, map[string]*rest.Config{"spoke": spoke.Config}), Secrets: direct(t, hub.Config)})
	_, err := reg.Client(context.Background(), "prod")
	var te *engine.TerminalError
	var ue *cluster.UnknownError
	if !errors.As(err, &te) || !errors.As(err, &ue) || ue.Name != "prod" {
		t.Fatalf("err = %v, want a terminal *UnknownError for prod", err)
	}
	for _, want := range []string{`"prod"`, "the contexts of", "Secrets in vela-system labelled " + cluster.LabelCredentialType} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

func TestNoLocalClusterAndBadSecretsAreTerminal(t *testing.T) {
	needClusters(t)
	ctx := context.Background()
	hubClient := direct(t, hub.Config)
	spokeSecret(t, hubClient, "no-credentials", map[string][]byte{cluster.KeyEndpoint: []byte(spoke.Config.Host)}, "ServiceAccountToken")
	reg := cluster.New(nil, cluster.Options{Secrets: hubClient})
	var te *engine.TerminalError
	if _, err := reg.Client(ctx, ""); !errors.As(err, &te) || !strings.Contains(err.Error(), "no local cluster") {
		t.Errorf("local without a config: %v", err)
	}
	if _, err := reg.Client(ctx, "no-credentials"); !errors.As(err, &te) || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("a Secret without credentials: %v", err)
	}
	reg = cluster.New(nil, cluster.Options{File: filepath.Join(t.TempDir(), "missing")})
	if _, err := reg.Client(ctx, "x"); !errors.As(err, &te) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing clusters file: %v", err)
	}
}

func TestLocalConfigReadsTheGivenKubeconfig(t *testing.T) {
	needClusters(t)
	cfg, err := cluster.LocalConfig(spoke.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSuffix(cfg.Host, "/") != strings.TrimSuffix(spoke.Config.Host, "/") {
		t.Errorf("host %s, want %s", cfg.Host, spoke.Config.Host)
	}
	if _, err := cluster.LocalConfig(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("a missing kubeconfig: %v", err)
	}
}

// countVersions counts the requests for /version it passes on.
type countVersions struct {
	next  http.RoundTripper
	asked *atomic.Int32
}

func (c countVersions) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/version" {
		c.asked.Add(1)
	}
	return c.next.RoundTrip(r)
}

// A cluster's version (context.clusterVersion of renders) is its discovery's, asked once per
// cluster however many renders ask for it; the local cluster's too.
func TestServerVersionIsAskedOncePerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	var asked atomic.Int32
	reg := cluster.New(hub.Config, cluster.Options{WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
		return countVersions{next: rt, asked: &asked}
	}})
	for _, name := range []string{"", "local", ""} {
		v, err := reg.ServerVersion(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if v.Major == "" || !strings.HasPrefix(v.GitVersion, "v"+v.Major+".") {
			t.Errorf("version %+v", v)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("/version asked %d times, want once", n)
	}
}
