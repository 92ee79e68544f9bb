package http_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/http"
	"github.com/stepflow/stepflow/step"
)

// api is the cluster whose Secrets the requests read: a real kube-apiserver and etcd.
var api *apiservertest.Cluster

func TestMain(m *testing.M) { apiservertest.Main(m, &api) }

// The token the server wants in Authorization, as the Secret keeps it (a file's trailing newline
// included).
const token = "Bearer s3cret-token-42"

// pki is a CA, a server certificate for 127.0.0.1 and a client certificate it signed, in PEM.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey []byte
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stepflow test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	p := &pki{ca: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	p.serverCert, p.serverKey = issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = issue(3, "deployer", x509.ExtKeyUsageClientAuth, nil)
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mtlsServer is an HTTPS server on loopback that talks only to clients with a certificate of
// p's CA, and answers 200 only with the token in Authorization. conns, when given, counts the
// connections it accepts.
func mtlsServer(t *testing.T, p *pki, conns *atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Header.Get("Authorization") != strings.TrimSpace(token) {
			nethttp.Error(w, "who are you?", nethttp.StatusUnauthorized)
			return
		}
		_, _ = fmt.Fprintf(w, "hello %s", r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	pair, err := tls.X509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.ca)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	if conns != nil {
		srv.Config.ConnState = func(_ net.Conn, s nethttp.ConnState) {
			if s == nethttp.StateNew {
				conns.Add(1)
			}
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// secretsEnv is a fresh namespace of the API server with the Secrets the requests read:
// api-token (the token), mtls (the CA and client certificate as PEM) and mtls-b64 (the same,
// base64-encoded once more, as KubeVela reads them).
func secretsEnv(t *testing.T, p *pki) (namespace string, c client.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c, err := client.New(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	namespace = apiservertest.Namespace(t)
	b64 := func(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) }
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "api-token", Namespace: namespace},
			Data: map[string][]byte{"token": []byte(token + "\n")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mtls", Namespace: namespace},
			Data: map[string][]byte{"ca.crt": p.ca, "client.crt": p.clientCert, "client.key": p.clientKey}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mtls-b64", Namespace: namespace},
			Data: map[string][]byte{"ca.crt": b64(p.ca), "client.crt": b64(p.clientCert), "client.key": b64(p.clientKey)}},
	} {
		if err := c.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	return namespace, c
}

// runStep evaluates template as a step of a run in namespace, with the http provider of opts.
func runStep(t *testing.T, opts http.Options, namespace, template string) (*engine.StepResult, error) {
	t.Helper()
	reg := step.NewRegistry()
	builtin.Register(reg)
	http.Register(reg, opts)
	r := step.NewRunner(step.Options{Registry: reg, Definitions: sameTemplate{}})
	return r.RunStep(context.Background(), &engine.StepRequest{
		Run:        engine.Key{Namespace: namespace, Name: "wr"},
		Step:       v1alpha1.WorkflowStepBase{Name: "call", Type: template, Outputs: v1alpha1.StepOutputs{{Name: "body", ValueFrom: "req.$returns.body"}}},
		Properties: json.RawMessage(`{}`),
		Context:    map[string]any{"name": "wr", "namespace": namespace, "stepName": "call"},
	})
}

// sameTemplate serves a step's type as its template.
type sameTemplate struct{}

func (sameTemplate) Template(_ context.Context, _, typ string) (string, error) { return typ, nil }

// callTemplate is a step that calls url with the header from api-token, tls_config naming
// secret (none when empty), and fails unless the answer is 200.
func callTemplate(url, secret string) string {
	tlsConfig := ""
	if secret != "" {
		tlsConfig = fmt.Sprintf("tls_config: secret: %q", secret)
	}
	return fmt.Sprintf(`
import (
	"vela/builtin"
	"vela/http"
)
req: http.#HTTPGet & {$params: {
	url: %q
	request: headersFromSecret: [{header: "Authorization", secret: "api-token", key: "token"}]
	%s
}}
check: {
	if req.$returns.statusCode != 200 {
		fail: builtin.#Fail & {$params: message: "status \(req.$returns.statusCode): \(req.$returns.body)"}
	}
}
`, url, tlsConfig)
}

// A step reaches an HTTPS service on loopback that requires a client certificate and a token:
// the token comes from one Secret, the CA and the client certificate from another, both read
// from a real API server; the step succeeds, and what it read is marked sensitive.
func TestSecretsGiveTheHeaderAndTheClientCertificate(t *testing.T) {
	p := newPKI(t)
	namespace, _ := secretsEnv(t, p)
	srv := mtlsServer(t, p, nil)
	opts := http.Options{Clusters: cluster.New(api.Config, cluster.Options{})}

	for form, secret := range map[string]string{"pem": "mtls", "base64 pem": "mtls-b64", "namespace/name": namespace + "/mtls"} {
		t.Run(form, func(t *testing.T) {
			res, err := runStep(t, opts, namespace, callTemplate(srv.URL+"/deploy", secret))
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != engine.Succeeded {
				t.Fatalf("step %v: %s %s", res.Outcome, res.Reason, res.Message)
			}
			if got := string(res.Outputs["body"]); got != `"hello deployer"` {
				t.Errorf("body %s, want the server's greeting of the client certificate", got)
			}
			for _, v := range []string{token, string(p.clientKey)} {
				if !slices.Contains(res.Sensitive, v) {
					t.Errorf("%.30q… is not marked sensitive (marked: %d values)", v, len(res.Sensitive))
				}
			}
		})
	}

	// The service really asks for the certificates: without tls_config its own is not trusted.
	res, err := runStep(t, opts, namespace, callTemplate(srv.URL, ""))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without tls_config: got %v (%+v), want a certificate error", err, res)
	}
}

// A Secret or key that is not there, and a tls_config Secret that holds no certificates, fail
// the step naming them.
func TestSecretsThatDoNotFit(t *testing.T) {
	p := newPKI(t)
	namespace, c := secretsEnv(t, p)
	if err := c.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "half", Namespace: namespace},
		Data: map[string][]byte{"client.crt": p.clientCert}}); err != nil {
		t.Fatal(err)
	}
	opts := http.Options{Clusters: cluster.New(api.Config, cluster.Options{})}
	a := action(t, opts)
	call := func(params map[string]any) error {
		_, err := a.Run(context.Background(), &step.Call{Params: params, Path: "req", Run: engine.Key{Namespace: namespace, Name: "wr"}, Step: "s", Session: &session{}})
		return err
	}
	header := func(secret, key string) map[string]any {
		return map[string]any{"url": "https://127.0.0.1:1", "request": map[string]any{"headersFromSecret": []any{
			map[string]any{"header": "Authorization", "secret": secret, "key": key}}}}
	}
	for name, tc := range map[string]struct {
		params   map[string]any
		want     string
		terminal bool
	}{
		"missing key": {header("api-token", "nope"), `request.headersFromSecret[0]: Secret ` + namespace + `/api-token has no key "nope"`, true},
		// A Secret that is not there yet may be made by an earlier step: tried again.
		"missing Secret": {header("nobody", "token"), "request.headersFromSecret[0]: reading Secret " + namespace + "/nobody: NotFound", false},
		"half a client certificate": {map[string]any{"url": "https://127.0.0.1:1", "tls_config": map[string]any{"secret": "half"}},
			"client.crt and client.key go together", true},
		"no certificates": {map[string]any{"url": "https://127.0.0.1:1", "tls_config": map[string]any{"secret": "api-token"}},
			"holds none of ca.crt, client.crt and client.key", true},
	} {
		err := call(tc.params)
		if err == nil || !strings.Contains(err.Error(), tc.want) || isTerminal(err) != tc.terminal {
			t.Errorf("%s: got %v (terminal %v), want %q (terminal %v)", name, err, isTerminal(err), tc.want, tc.terminal)
		}
	}
}

// A request with tls_config dials through the client's transport, the egress policy's: a
// denied address stays denied, however the TLS configuration changes.
func TestTLSConfigRequestsStayBehindTheEgressPolicy(t *testing.T) {
	p := newPKI(t)
	namespace, _ := secretsEnv(t, p)
	var conns atomic.Int32
	srv := mtlsServer(t, p, &conns)
	policy, err := egress.New(egress.Options{Deny: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	opts := http.Options{Client: policy.Client(), Clusters: cluster.New(api.Config, cluster.Options{})}
	_, err = runStep(t, opts, namespace, callTemplate(srv.URL, "mtls"))
	if err == nil || !strings.Contains(err.Error(), `denied by the egress deny entry "127.0.0.0/8"`) {
		t.Errorf("got %v, want the egress policy's refusal", err)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the denied server accepted %d connections", n)
	}
}
