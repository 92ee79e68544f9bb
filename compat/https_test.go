package compat_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// httpsServer is the service the cases of KubeVela's HTTP-with-Secrets behaviour call: an HTTPS
// server on loopback, with a certificate of its own test CA, that talks only to clients with a
// certificate that CA signed and answers only requests whose Authorization header is
// "Bearer <token>".
type httpsServer struct {
	*httptest.Server
	token                     string
	ca, clientCert, clientKey []byte // PEM
}

// startHTTPS makes the CA, the server's and the client's certificates, and starts the server
// until the test ends.
func startHTTPS(t *testing.T) *httpsServer {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "compat test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
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
	s := &httpsServer{token: rand.Text(), ca: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	serverCert, serverKey := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	s.clientCert, s.clientKey = issue(3, "compat-client", x509.ExtKeyUsageClientAuth, nil)

	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.answer))
	pair, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// answer greets the client certificate's subject at the path asked, or refuses a request
// without the token.
func (s *httpsServer) answer(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		http.Error(w, "who are you?", http.StatusUnauthorized)
		return
	}
	_, _ = fmt.Fprintf(w, "hello %s at %s", r.TLS.PeerCertificates[0].Subject.CommonName, r.URL.Path)
}

// placeholders are the values a case's ${NAME}s take for this server: its URL, the token it
// wants, and the CA and client certificate as KubeVela's tls_config reads them from a Secret's
// data (PEM, base64-encoded: a Secret's stringData takes them as they are).
func (s *httpsServer) placeholders() map[string]string {
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	return map[string]string{
		"HTTPS_URL":   s.URL,
		"HTTPS_TOKEN": s.token,
		"CA_CRT":      b64(s.ca),
		"CLIENT_CRT":  b64(s.clientCert),
		"CLIENT_KEY":  b64(s.clientKey),
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
