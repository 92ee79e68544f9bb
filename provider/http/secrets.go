package http

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	nethttp "net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/step"
)

// The data keys of a tls_config Secret, as KubeVela reads them.
const (
	KeyCA         = "ca.crt"
	KeyClientCert = "client.crt"
	KeyClientKey  = "client.key"
)

// headerSecret is one item of request.headersFromSecret: the header Header (or Name, its older
// spelling) gets the value under Key of the Secret named Secret, in the run's namespace; or
// under SecretRef's key of the Secret it names.
type headerSecret struct {
	Header    string     `json:"header"`
	Name      string     `json:"name"`
	Secret    string     `json:"secret"`
	Key       string     `json:"key"`
	SecretRef *secretRef `json:"secretRef"`
}

// secretRef names a Secret of the run's namespace and one of its keys.
type secretRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// ref is the Secret and key h reads: secret and key, or secretRef.
func (h headerSecret) ref(field string) (secret, key string, err error) {
	if h.SecretRef == nil {
		return h.Secret, h.Key, nil
	}
	if h.Secret != "" || h.Key != "" {
		return "", "", terminalf("%s: give the Secret once, as secret and key or as secretRef, not both", field)
	}
	return h.SecretRef.Name, h.SecretRef.Key, nil
}

// tlsParams is tls_config: the Secret holding the CAs and the client certificate. Secret may
// also be written namespace/name, as KubeVela's code reads it.
type tlsParams struct {
	Secret    string `json:"secret"`
	Namespace string `json:"namespace"`
}

// withSecrets reads the Secrets that request.headersFromSecret and tls_config name, sets those
// headers on req, and returns the client to send req with: the provider's, or a copy of it
// whose transport has the TLS configuration.
func (p *provider) withSecrets(ctx context.Context, call *step.Call, in *params, req *nethttp.Request) (*nethttp.Client, error) {
	var headers []headerSecret
	if in.Request != nil {
		headers = in.Request.HeadersFromSecret
	}
	if len(headers) == 0 && in.TLSConfig == nil {
		return p.client, nil
	}
	names := make([]string, len(headers))
	for i, h := range headers {
		name, err := headerName(h, fmt.Sprintf("request.headersFromSecret[%d]", i))
		if err != nil {
			return nil, err
		}
		names[i] = name
	}
	r, err := p.secrets(ctx, call, in)
	if err != nil {
		return nil, err
	}
	for i, h := range headers {
		if err := r.setHeader(ctx, req.Header, names[i], h, fmt.Sprintf("request.headersFromSecret[%d]", i)); err != nil {
			return nil, err
		}
	}
	if in.TLSConfig == nil {
		return p.client, nil
	}
	cfg, err := r.tlsConfig(ctx, in.TLSConfig)
	if err != nil {
		return nil, err
	}
	return p.withTLS(cfg)
}

// secretReader reads the Secrets of one call from the local cluster and marks their values
// sensitive.
type secretReader struct {
	cl        client.Client
	call      *step.Call
	namespace string // the run's
}

// secrets gives a reader of the local cluster's Secrets, or says why there is none.
func (p *provider) secrets(ctx context.Context, call *step.Call, in *params) (*secretReader, error) {
	what := "tls_config"
	if in.Request != nil && len(in.Request.HeadersFromSecret) > 0 {
		what = "request.headersFromSecret"
	}
	if p.clusters == nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/http: %s reads Secrets, which needs a cluster, and none is configured (give stepflow one with --kubeconfig)", what))
	}
	cl, err := p.clusters.Client(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("vela/http: %s reads Secrets of the local cluster: %w", what, err)
	}
	return &secretReader{cl: cl, call: call, namespace: call.Run.Namespace}, nil
}

// get reads a Secret for field and marks each of its values sensitive, as it is stored and
// as the base64 text the API carries.
func (r *secretReader) get(ctx context.Context, namespace, name, field string) (*corev1.Secret, error) {
	if name == "" {
		return nil, terminalf("%s: the Secret's name is empty", field)
	}
	var s corev1.Secret
	if err := r.cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s); err != nil {
		return nil, kube.Failure(fmt.Sprintf("vela/http: %s: reading Secret %s/%s", field, namespace, name), err)
	}
	values := make([]string, 0, 2*len(s.Data))
	for _, v := range s.Data {
		values = append(values, string(v), base64.StdEncoding.EncodeToString(v))
	}
	r.call.Sensitive(values...)
	return &s, nil
}

// headerName is the name of the header h sets: header, or name, its older spelling.
func headerName(h headerSecret, field string) (string, error) {
	name := h.Header
	switch {
	case name == "":
		name = h.Name
	case h.Name != "" && h.Name != h.Header:
		return "", terminalf("%s: give the header's name once, as header (name is its older spelling), not both", field)
	}
	if name == "" {
		return "", terminalf("%s: header (the header's name) is required", field)
	}
	return name, nil
}

// setHeader sets the header name to the value of h's Secret's key. A trailing newline, which a
// Secret made from a file often has, is dropped.
func (r *secretReader) setHeader(ctx context.Context, header nethttp.Header, name string, h headerSecret, field string) error {
	secret, key, err := h.ref(field)
	if err != nil {
		return err
	}
	s, err := r.get(ctx, r.namespace, secret, field)
	if err != nil {
		return err
	}
	raw, ok := s.Data[key]
	if !ok {
		return terminalf("%s: Secret %s/%s has no key %q", field, s.Namespace, s.Name, key)
	}
	value := strings.TrimRight(string(raw), "\r\n")
	r.call.Sensitive(value)
	if i := strings.IndexFunc(value, func(c rune) bool { return (c < ' ' && c != '\t') || c == 0x7f }); i >= 0 {
		return terminalf("%s: the value of key %q of Secret %s/%s is not a valid header value: it holds a control character at byte %d", field, key, s.Namespace, s.Name, i)
	}
	header.Set(name, value)
	return nil
}

// tlsConfig reads the Secret tls_config names into a TLS configuration: ca.crt replaces the
// system's CAs, client.crt and client.key are the client certificate. Each is PEM, or PEM
// encoded once more in base64, which is what KubeVela reads.
func (r *secretReader) tlsConfig(ctx context.Context, tp *tlsParams) (*tls.Config, error) {
	namespace, name := tp.Namespace, tp.Secret
	if namespace == "" {
		namespace = r.namespace
		if ns, n, ok := strings.Cut(name, "/"); ok {
			namespace, name = ns, n
		}
	}
	s, err := r.get(ctx, namespace, name, "tls_config")
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("tls_config: Secret %s/%s", namespace, name)
	ca, hasCA := s.Data[KeyCA]
	cert, hasCert := s.Data[KeyClientCert]
	key, hasKey := s.Data[KeyClientKey]
	if !hasCA && !hasCert && !hasKey {
		return nil, terminalf("%s holds none of %s, %s and %s", where, KeyCA, KeyClientCert, KeyClientKey)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if hasCA {
		b, err := pemData(ca)
		if err != nil {
			return nil, terminalf("%s: %s %w", where, KeyCA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, terminalf("%s: %s holds no certificate", where, KeyCA)
		}
		cfg.RootCAs = pool
	}
	if hasCert != hasKey {
		return nil, terminalf("%s: %s and %s go together, and it holds only one of them", where, KeyClientCert, KeyClientKey)
	}
	if hasCert {
		certPEM, err := pemData(cert)
		if err != nil {
			return nil, terminalf("%s: %s %w", where, KeyClientCert, err)
		}
		keyPEM, err := pemData(key)
		if err != nil {
			return nil, terminalf("%s: %s %w", where, KeyClientKey, err)
		}
		r.call.Sensitive(string(keyPEM))
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, terminalf("%s: %s and %s: %w", where, KeyClientCert, KeyClientKey, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// pemData returns b when it is PEM, or what it decodes to when it is base64-encoded PEM.
func pemData(b []byte) ([]byte, error) {
	begin := []byte("-----BEGIN")
	if bytes.Contains(b, begin) {
		return b, nil
	}
	decoded, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || !bytes.Contains(decoded, begin) {
		return nil, errors.New("is neither PEM nor base64-encoded PEM")
	}
	return decoded, nil
}

// withTLS returns a copy of the provider's client whose transport is a copy of its own with
// cfg's CAs and certificate: it dials as the provider's transport does, through the egress
// policy when there is one. The copy keeps no idle connections, as it serves one request.
func (p *provider) withTLS(cfg *tls.Config) (*nethttp.Client, error) {
	var base *nethttp.Transport
	switch t := p.client.Transport.(type) {
	case nil:
		base = nethttp.DefaultTransport.(*nethttp.Transport)
	case *nethttp.Transport:
		base = t
	default:
		return nil, terminalf("tls_config: the http provider's client has a transport of its own (%T), which cannot take a TLS configuration", t)
	}
	t := base.Clone()
	if t.TLSClientConfig != nil {
		merged := t.TLSClientConfig.Clone()
		if cfg.RootCAs != nil {
			merged.RootCAs = cfg.RootCAs
		}
		merged.Certificates = cfg.Certificates
		merged.MinVersion = max(merged.MinVersion, cfg.MinVersion)
		cfg = merged
	}
	t.TLSClientConfig = cfg
	t.DisableKeepAlives = true
	c := *p.client
	c.Transport = t
	return &c, nil
}

// terminalf is an error no retry can mend.
func terminalf(format string, args ...any) error {
	return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/http: "+format, args...))
}
