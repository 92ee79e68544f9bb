package email_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/email"
	"github.com/stepflow/stepflow/step"
)

// received is a message as the test server got it.
type received struct {
	from, user string
	to         []string
	tls        bool
	msg        *mail.Message
	body       string
}

type serverConfig struct {
	tls      string   // "", "starttls" or "implicit"
	mechs    []string // the AUTH mechanisms offered; none means no AUTH
	password string   // the password of every user
	rcptCode int      // when set, every RCPT is refused with this code
}

type testServer struct {
	port int
	cert *x509.Certificate
	got  chan received
}

// startServer runs a go-smtp server on a loopback port until the test ends.
func startServer(t *testing.T, cfg serverConfig) *testServer {
	t.Helper()
	ts := &testServer{got: make(chan received, 4)}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &session{cfg: cfg, srv: ts, r: received{tls: isTLS}}, nil
	})
	s := smtp.NewServer(be)
	s.Domain = "localhost"
	s.AllowInsecureAuth = true
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.ErrorLog = quietLog{}
	if cfg.tls != "" {
		cert, parsed := selfSigned(t)
		ts.cert = parsed
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	l, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.tls == "implicit" {
		l = tls.NewListener(l, s.TLSConfig)
	}
	ts.port = l.Addr().(*net.TCPAddr).Port
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ts
}

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

type session struct {
	cfg serverConfig
	srv *testServer
	r   received
}

func (s *session) AuthMechanisms() []string { return s.cfg.mechs }

func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, password string) error {
		if password != s.cfg.password {
			return smtp.ErrAuthFailed
		}
		s.r.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, password string) error { return check(user, password) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, errors.New("unsupported mechanism")
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if len(s.cfg.mechs) > 0 && s.r.user == "" {
		return &smtp.SMTPError{Code: 530, Message: "authentication required"}
	}
	s.r.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.cfg.rcptCode != 0 {
		return &smtp.SMTPError{Code: s.cfg.rcptCode, Message: "mailbox " + to + " is not here"}
	}
	s.r.to = append(s.r.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		return err
	}
	s.r.msg, s.r.body = msg, string(body)
	s.srv.got <- s.r
	return nil
}

func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }

// loginServer is the server side of the LOGIN mechanism, which go-sasl does not have.
type loginServer struct {
	check func(user, password string) error
	user  string
	step  int
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(response)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(response))
}

// selfSigned makes a certificate for 127.0.0.1 and localhost.
func selfSigned(t *testing.T) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test smtp"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, parsed
}

// sendAction registers the provider with opts and returns its action.
func sendAction(t *testing.T, opts email.Options) *step.Action {
	t.Helper()
	r := step.NewRegistry()
	email.Register(r, opts)
	a, ok := r.Action("email", "send")
	if !ok {
		t.Fatal("email.send is not registered")
	}
	return a
}

// trusting trusts the server's certificate.
func trusting(ts *testServer) *tls.Config {
	pool := x509.NewCertPool()
	if ts.cert != nil {
		pool.AddCert(ts.cert)
	}
	return &tls.Config{RootCAs: pool}
}

func params(port int, password string) map[string]any {
	return map[string]any{
		"from": map[string]any{"address": "ci@example.com", "alias": "CI Bot", "password": password,
			"host": "127.0.0.1", "port": port},
		"to":      []any{"dev@example.com", "Ops <ops@example.org>"},
		"content": map[string]any{"subject": "Deploy of shop: ✓ done", "body": "<b>shop</b> is live = ok"},
	}
}

func call(t *testing.T, a *step.Action, p map[string]any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := a.Run(ctx, &step.Call{Params: p, Path: "send", Step: "notify"})
	return err
}

func wantMessage(t *testing.T, ts *testServer) received {
	t.Helper()
	select {
	case r := <-ts.got:
		if r.from != "ci@example.com" {
			t.Errorf("MAIL FROM %q", r.from)
		}
		if strings.Join(r.to, " ") != "dev@example.com ops@example.org" {
			t.Errorf("RCPT TO %v", r.to)
		}
		h := r.msg.Header
		if got := h.Get("From"); got != `"CI Bot" <ci@example.com>` {
			t.Errorf("From: %s", got)
		}
		if got := h.Get("To"); got != `<dev@example.com>, "Ops" <ops@example.org>` {
			t.Errorf("To: %s", got)
		}
		subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
		if err != nil || subject != "Deploy of shop: ✓ done" {
			t.Errorf("Subject: %q (%v)", subject, err)
		}
		if !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Errorf("Content-Type: %s", h.Get("Content-Type"))
		}
		if strings.TrimRight(r.body, "\r\n") != "<b>shop</b> is live = ok" {
			t.Errorf("body %q", r.body)
		}
		return r
	default:
		t.Fatal("the server received no message")
		return received{}
	}
}

func TestSendsWithoutTLSOrAuthToALocalRelay(t *testing.T) {
	ts := startServer(t, serverConfig{})
	if err := call(t, sendAction(t, email.Options{}), params(ts.port, "")); err != nil {
		t.Fatal(err)
	}
	if r := wantMessage(t, ts); r.tls || r.user != "" {
		t.Errorf("tls %t, user %q: want a plain, unauthenticated send", r.tls, r.user)
	}
}

func TestUpgradesWithSTARTTLSAndLogsIn(t *testing.T) {
	for _, mechs := range [][]string{{sasl.Plain, sasl.Login}, {sasl.Login}} {
		t.Run(strings.Join(mechs, "+"), func(t *testing.T) {
			ts := startServer(t, serverConfig{tls: "starttls", mechs: mechs, password: "s3cret"})
			if err := call(t, sendAction(t, email.Options{TLSConfig: trusting(ts)}), params(ts.port, "s3cret")); err != nil {
				t.Fatal(err)
			}
			if r := wantMessage(t, ts); !r.tls || r.user != "ci@example.com" {
				t.Errorf("tls %t, user %q: want STARTTLS and a login as ci@example.com", r.tls, r.user)
			}
		})
	}
}

func TestPort465IsImplicitTLS(t *testing.T) {
	ts := startServer(t, serverConfig{tls: "implicit", mechs: []string{sasl.Plain}, password: "s3cret"})
	// The server cannot listen on 465 in a test: the dialer sends port 465 to it.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != "127.0.0.1:465" {
			return nil, fmt.Errorf("dialed %s, want 127.0.0.1:465", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(ts.port))
	}
	if err := call(t, sendAction(t, email.Options{TLSConfig: trusting(ts), Dial: dial}), params(465, "s3cret")); err != nil {
		t.Fatal(err)
	}
	if r := wantMessage(t, ts); !r.tls || r.user != "ci@example.com" {
		t.Errorf("tls %t, user %q", r.tls, r.user)
	}
}

func TestAnUntrustedCertificateFailsTheStep(t *testing.T) {
	ts := startServer(t, serverConfig{tls: "starttls"})
	err := call(t, sendAction(t, email.Options{}), params(ts.port, ""))
	var te *engine.TerminalError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("got %v, want a terminal certificate error", err)
	}
}

func TestAuthFailureIsTerminalWithTheServersReplyAndNoPassword(t *testing.T) {
	ts := startServer(t, serverConfig{tls: "starttls", mechs: []string{sasl.Plain}, password: "right"})
	err := call(t, sendAction(t, email.Options{TLSConfig: trusting(ts)}), params(ts.port, "wrong-pa55word"))
	if _, ok := errors.AsType[*engine.TerminalError](err); !ok {
		t.Fatalf("got %v, want a terminal error", err)
	}
	if !strings.Contains(err.Error(), "535") || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("error %q does not give the server's reply", err)
	}
	if strings.Contains(err.Error(), "wrong-pa55word") {
		t.Errorf("error %q shows the password", err)
	}
	if len(ts.got) != 0 {
		t.Error("a message was delivered")
	}
}

func TestPasswordIsNotSentInTheClear(t *testing.T) {
	// A server that offers AUTH on a connection that stays unencrypted, at a non-local name.
	ts := startServer(t, serverConfig{mechs: []string{sasl.Plain}, password: "s3cret"})
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(ts.port))
	}
	p := params(587, "s3cret")
	p["from"].(map[string]any)["host"] = "mail.example.com"
	err := call(t, sendAction(t, email.Options{Dial: dial}), p)
	var te *engine.TerminalError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "unencrypted") {
		t.Fatalf("got %v, want a terminal error about the unencrypted connection", err)
	}
}

func TestTransientFailuresAreRetried(t *testing.T) {
	l, err := new(net.ListenConfig).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, serverConfig{rcptCode: 451})
	for name, port := range map[string]int{"connection refused": closed, "451 reply": ts.port} {
		err := call(t, sendAction(t, email.Options{}), params(port, ""))
		var te *engine.TerminalError
		if err == nil || errors.As(err, &te) {
			t.Errorf("%s: got %v, want a retryable error", name, err)
		}
	}
}

func TestPermanentRefusalIsTerminal(t *testing.T) {
	ts := startServer(t, serverConfig{rcptCode: 550})
	err := call(t, sendAction(t, email.Options{}), params(ts.port, ""))
	var te *engine.TerminalError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "is not here") {
		t.Fatalf("got %v, want a terminal error with the server's 550 reply", err)
	}
}

func TestBadParametersAreTerminal(t *testing.T) {
	a := sendAction(t, email.Options{})
	for name, mutate := range map[string]func(p map[string]any){
		"no recipient":  func(p map[string]any) { p["to"] = []any{} },
		"bad recipient": func(p map[string]any) { p["to"] = []any{"not an address"} },
		"bad sender":    func(p map[string]any) { p["from"].(map[string]any)["address"] = "ci" },
		"no port":       func(p map[string]any) { p["from"].(map[string]any)["port"] = 0 },
	} {
		p := params(25, "")
		mutate(p)
		err := call(t, a, p)
		if _, ok := errors.AsType[*engine.TerminalError](err); !ok {
			t.Errorf("%s: got %v, want a terminal error", name, err)
		}
	}
}

func TestSubjectCannotAddHeaders(t *testing.T) {
	ts := startServer(t, serverConfig{})
	p := params(ts.port, "")
	p["content"].(map[string]any)["subject"] = "hi\r\nBcc: eve@example.com"
	if err := call(t, sendAction(t, email.Options{}), p); err != nil {
		t.Fatal(err)
	}
	r := <-ts.got
	if r.msg.Header.Get("Bcc") != "" {
		t.Errorf("the subject added a Bcc header: %v", r.msg.Header)
	}
	var raw bytes.Buffer
	for k, v := range r.msg.Header {
		fmt.Fprintln(&raw, k, v)
	}
	if strings.Contains(raw.String(), "\nBcc") {
		t.Errorf("headers: %s", raw.String())
	}
}
