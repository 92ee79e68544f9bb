// Package email supplies the CUE package vela/email: #SendEmail sends one message over SMTP, as
// KubeVela's email provider does, and the same action behind the legacy op.#SendEmail.
//
// The connection is TLS from the start on port 465 and upgraded with STARTTLS wherever the
// server offers it; the sender authenticates (PLAIN or LOGIN, user from.address) only when the
// server offers AUTH, so that a local relay without authentication works. A send is a side
// effect: within one step attempt it runs once.
//
// A server that cannot be reached, and a 4xx reply (a temporary failure in SMTP), are plain
// errors, which the engine retries with backoff. An authentication failure, a 5xx reply, a bad
// address or a certificate that does not verify fail the step at once with the server's reply.
// The password never appears in an error or a log.
package email

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

//go:embed email.cue
var source string

// DefaultTimeout bounds one send when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Options configure the provider; the zero value works.
type Options struct {
	// TLSConfig is the base of the TLS client configuration (its ServerName is set to the
	// server's host); nil verifies certificates against the system's roots.
	TLSConfig *tls.Config
	// Timeout bounds one send, from dialing to the server's reply to the message; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Hostname is the name the client gives in EHLO; empty means "localhost", as Go's SMTP
	// client says.
	Hostname string
	// Dial opens the TCP connection to address (host:port); nil means a net.Dialer. TLS on
	// port 465 is layered on what it returns.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Register adds the package (import path "vela/email") and its action email.send to r.
func Register(r *step.Registry, opts Options) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	s := &sender{opts: opts}
	r.AddPackage(step.Package{Path: "vela/email", Source: source})
	r.Register(step.Action{Provider: "email", Do: "send", Run: s.send, SideEffect: step.Always})
}

// message is one email, as #SendEmail's parameters give it.
type message struct {
	From struct {
		Address  string `json:"address"`
		Alias    string `json:"alias"`
		Password string `json:"password"`
		Host     string `json:"host"`
		Port     int    `json:"port"`
	} `json:"from"`
	To      []string `json:"to"`
	Content struct {
		Subject string `json:"subject"`
		Body    string `json:"body"`
	} `json:"content"`
}

type sender struct{ opts Options }

func (s *sender) send(ctx context.Context, call *step.Call) (any, error) {
	var m message
	if err := call.Decode(&m); err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/email: %w", err))
	}
	call.Sensitive(m.From.Password)
	server := net.JoinHostPort(m.From.Host, strconv.Itoa(m.From.Port))
	call.Report(step.Report{Summary: fmt.Sprintf("send %q through %s", m.Content.Subject, server)})
	if err := s.sendMessage(ctx, &m, time.Now()); err != nil {
		return nil, err
	}
	call.Report(step.Report{Summary: fmt.Sprintf("sent %q through %s to %d recipients", m.Content.Subject, server, len(m.To))})
	return nil, nil
}

// sendMessage sends m at the time now (the Date header). Errors are engine.Terminal unless
// trying again may help.
func (s *sender) sendMessage(ctx context.Context, m *message, now time.Time) error {
	from, to, data, err := compose(m, now)
	if err != nil {
		return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/email: %w", err))
	}
	if m.From.Host == "" || m.From.Port <= 0 || m.From.Port > 65535 {
		return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/email: from.host and from.port (1-65535) name the SMTP server; got %q and %d", m.From.Host, m.From.Port))
	}
	server := net.JoinHostPort(m.From.Host, strconv.Itoa(m.From.Port))
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := s.deliver(ctx, m, server, from, to, data); err != nil {
		return classify(ctx, fmt.Errorf("vela/email: sending to %s: %w", server, err))
	}
	return nil
}

// deliver holds one SMTP conversation.
func (s *sender) deliver(ctx context.Context, m *message, server, from string, to []string, data []byte) error {
	tlsConfig := &tls.Config{}
	if s.opts.TLSConfig != nil {
		tlsConfig = s.opts.TLSConfig.Clone()
	}
	tlsConfig.ServerName = m.From.Host
	dial := s.opts.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", server)
	if err != nil {
		return err
	}
	if m.From.Port == 465 {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return fmt.Errorf("TLS: %w", err)
		}
		conn = tc
	}
	// The deadline bounds every read and write; cancelling ctx closes the connection.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	c, err := smtp.NewClient(conn, m.From.Host)
	if err != nil {
		_ = conn.Close()
		return err
	}
	// After Quit the connection is closed already; after a failure, the failure is the news.
	defer func() { _ = c.Close() }()
	if err := c.Hello(orDefault(s.opts.Hostname, "localhost")); err != nil {
		return err
	}
	if _, isTLS := conn.(*tls.Conn); !isTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsConfig); err != nil {
				return fmt.Errorf("STARTTLS: %w", err)
			}
		}
	}
	if ok, mechs := c.Extension("AUTH"); ok {
		a, err := chooseAuth(mechs, m.From.Address, m.From.Password, m.From.Host)
		if err != nil {
			return err
		}
		if err := c.Auth(a); err != nil {
			return &authError{err}
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, addr := range to {
		if err := c.Rcpt(addr); err != nil {
			return fmt.Errorf("recipient %s: %w", addr, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// authError marks a failed login.
type authError struct{ err error }

func (e *authError) Error() string { return "authentication failed: " + e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// chooseAuth picks PLAIN, else LOGIN, among the mechanisms the server offers.
func chooseAuth(offered, user, password, host string) (smtp.Auth, error) {
	mechs := strings.Fields(strings.ToUpper(offered))
	if slices.Contains(mechs, "PLAIN") {
		return smtp.PlainAuth("", user, password, host), nil
	}
	if slices.Contains(mechs, "LOGIN") {
		return &loginAuth{user: user, password: password, host: host}, nil
	}
	return nil, &authError{fmt.Errorf("the server offers AUTH %s; stepflow speaks PLAIN and LOGIN", offered)}
}

// loginAuth is the LOGIN mechanism: the server prompts for the user name, then the password.
// Like Go's PlainAuth it sends them only over TLS or to a local server.
type loginAuth struct{ user, password, host string }

func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !isLocal(server.Name) {
		return "", nil, errors.New("the server offers LOGIN only over an unencrypted connection: refusing to send the password")
	}
	if server.Name != a.host {
		return "", nil, errors.New("wrong host name")
	}
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	prompt := strings.ToLower(strings.TrimSpace(string(fromServer)))
	switch {
	case strings.HasPrefix(prompt, "user"):
		return []byte(a.user), nil
	case strings.HasPrefix(prompt, "pass"):
		return []byte(a.password), nil
	}
	return nil, fmt.Errorf("unexpected LOGIN prompt %q", fromServer)
}

func isLocal(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// classify makes err terminal unless trying again may help: a server not reached, a timeout,
// or a 4xx reply.
func classify(ctx context.Context, err error) error {
	var tp *textproto.Error
	var ae *authError
	var ce *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &tp):
		if tp.Code >= 400 && tp.Code < 500 {
			return err
		}
		return engine.Terminal(v1alpha1.ReasonExecute, err)
	case errors.As(err, &ae), errors.As(err, &ce), errors.As(err, &rh):
		return engine.Terminal(v1alpha1.ReasonExecute, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%w (no reply in time)", err)
	}
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
