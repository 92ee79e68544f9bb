package email

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
)

// compose checks the addresses and renders the message: headers, then the body as HTML in
// quoted-printable. It returns the envelope sender and recipients with it.
func compose(m *message, now time.Time) (from string, to []string, data []byte, err error) {
	sender, err := mail.ParseAddress(m.From.Address)
	if err != nil {
		return "", nil, nil, fmt.Errorf("from.address %q: %w", m.From.Address, err)
	}
	if m.From.Alias != "" {
		sender.Name = m.From.Alias
	}
	if len(m.To) == 0 {
		return "", nil, nil, errors.New("to: no recipient")
	}
	var rcpts []string
	for i, s := range m.To {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return "", nil, nil, fmt.Errorf("to[%d] %q: %w", i, s, err)
		}
		rcpts = append(rcpts, a.Address)
		to = append(to, a.String())
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	_, domain, _ := strings.Cut(sender.Address, "@")

	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", sender.String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", oneLine(m.Content.Subject)))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id)+"@"+domain+">")
	header("MIME-Version", "1.0")
	header("Content-Type", `text/html; charset="utf-8"`)
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(m.Content.Body)); err != nil {
		return "", nil, nil, fmt.Errorf("content.body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return "", nil, nil, fmt.Errorf("content.body: %w", err)
	}
	b.WriteString("\r\n")
	return sender.Address, rcpts, b.Bytes(), nil
}

// oneLine keeps a header value on one line, so that a subject cannot add headers.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }), " ")
}
