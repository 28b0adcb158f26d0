// Package smtppeer is an SMTP server for tests (github.com/emersion/go-smtp) with TLS
// and AUTH PLAIN (user herald, password s3cret). It rejects recipients rejected@...
// with 550 and answers busy@... with 451, and keeps every message it accepts.
package smtppeer

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/heraldhq/herald/internal/testtls"
)

// Credentials the peer accepts.
const (
	User     = "herald"
	Password = "s3cret"
)

// Peer is a running SMTP server.
type Peer struct {
	Port int
	// ClientTLS trusts the peer's certificate; CAPEM is that certificate.
	ClientTLS *tls.Config
	CAPEM     []byte

	mu       sync.Mutex
	messages []string
	conns    int
}

// Start runs a peer until the test ends; implicit selects TLS from the first byte,
// otherwise STARTTLS is offered.
func Start(t testing.TB, implicit bool) *Peer {
	t.Helper()
	srvTLS, cliTLS, caPEM := testtls.NewWithPEM(t)
	p := &Peer{ClientTLS: cliTLS, CAPEM: caPEM}
	s := smtp.NewServer(p)
	s.Domain = "localhost"
	s.TLSConfig = srvTLS
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	var ln net.Listener
	var err error
	if implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	} else {
		ln, err = (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	p.Port = ln.Addr().(*net.TCPAddr).Port
	go func() { _ = s.Serve(counting{ln, p}) }()
	t.Cleanup(func() { _ = s.Close() })
	return p
}

// Messages returns the accepted messages, raw.
func (p *Peer) Messages() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.messages...)
}

// Conns returns how many connections were accepted.
func (p *Peer) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

// NewSession implements smtp.Backend.
func (p *Peer) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{p: p}, nil }

type counting struct {
	net.Listener
	p *Peer
}

func (c counting) Accept() (net.Conn, error) {
	conn, err := c.Listener.Accept()
	if err == nil {
		c.p.mu.Lock()
		c.p.conns++
		c.p.mu.Unlock()
	}
	return conn, err
}

type session struct {
	p      *Peer
	authed bool
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != User || pass != Password {
			return errors.New("bad credentials")
		}
		x.authed = true
		return nil
	}), nil
}
func (x *session) Mail(string, *smtp.MailOptions) error {
	if !x.authed {
		return &smtp.SMTPError{Code: 530, Message: "authentication required"}
	}
	return nil
}
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "rejected@"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case strings.HasPrefix(to, "busy@"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	return nil
}
func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.p.mu.Lock()
	x.p.messages = append(x.p.messages, string(b))
	x.p.mu.Unlock()
	return nil
}
func (x *session) Reset()        {}
func (x *session) Logout() error { return nil }
