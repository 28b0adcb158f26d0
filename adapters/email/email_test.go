package email_test

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

	"github.com/heraldhq/herald/adapters/email"
	"github.com/heraldhq/herald/internal/testtls"
	"github.com/heraldhq/herald/notify"
)

// server is an SMTP peer: it requires AUTH, rejects rejected@ (550) and answers
// busy@ with 451, and keeps what it accepted.
type server struct {
	mu       sync.Mutex
	messages []string
	conns    int
}

func (s *server) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }

// counting counts accepted connections.
type counting struct {
	net.Listener
	s *server
}

func (c counting) Accept() (net.Conn, error) {
	conn, err := c.Listener.Accept()
	if err == nil {
		c.s.mu.Lock()
		c.s.conns++
		c.s.mu.Unlock()
	}
	return conn, err
}

type session struct {
	s      *server
	authed bool
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "herald" || pass != "s3cret" {
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
	x.s.mu.Lock()
	x.s.messages = append(x.s.messages, string(b))
	x.s.mu.Unlock()
	return nil
}
func (x *session) Reset()        {}
func (x *session) Logout() error { return nil }

func start(t *testing.T, implicit bool) (*server, int, *tls.Config) {
	t.Helper()
	srvTLS, cliTLS := testtls.New(t)
	be := &server{}
	s := smtp.NewServer(be)
	s.Domain = "localhost"
	s.TLSConfig = srvTLS
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	var ln net.Listener
	var err error
	if implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(counting{ln, be}) }()
	t.Cleanup(func() { _ = s.Close() })
	return be, ln.Addr().(*net.TCPAddr).Port, cliTLS
}

func message(to string) notify.Message {
	return notify.Message{DeliveryID: "dlv_0123456789abcdef", Channel: notify.ChannelEmail, Address: notify.Address(to),
		Content: notify.Content{Subject: "交易提醒 ¥1,234.56", Text: "您的账户支出 ¥1,234.56", HTML: "<p>您的账户支出 <b>¥1,234.56</b></p>"}}
}

func TestSMTP(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{email.TLSStartTLS, email.TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			be, port, cliTLS := start(t, mode == email.TLSImplicit)
			p, err := email.New(email.Config{Name: "smtp-test", Host: "127.0.0.1", Port: port, TLS: mode,
				Username: "herald", Password: "s3cret", From: "Herald Bank <noreply@bank.example>", TLSConfig: cliTLS, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			r, err := p.Send(ctx, message("alice@example.com"))
			if err != nil {
				t.Fatal(err)
			}
			if r.ProviderMessageID != "<dlv_0123456789abcdef@bank.example>" || r.Provider != "smtp-test" {
				t.Fatalf("receipt %+v", r)
			}
			// A second send reuses the connection.
			if _, err := p.Send(ctx, message("bob@example.com")); err != nil {
				t.Fatal(err)
			}
			be.mu.Lock()
			got, conns := be.messages, be.conns
			be.mu.Unlock()
			if len(got) != 2 || conns != 1 {
				t.Fatalf("%d messages over %d connections, want 2 over 1", len(got), conns)
			}
			for _, want := range []string{"Message-ID: <dlv_0123456789abcdef@bank.example>", "multipart/alternative",
				"text/plain", "text/html", "=?UTF-8?", "From: \"Herald Bank\" <noreply@bank.example>"} {
				if !strings.Contains(got[0], want) {
					t.Fatalf("message lacks %q:\n%s", want, got[0])
				}
			}

			_, err = p.Send(ctx, message("rejected@example.com"))
			if notify.ClassOf(err) != notify.ClassPermanent {
				t.Fatalf("550: %v (%s), want permanent", err, notify.ClassOf(err))
			}
			_, err = p.Send(ctx, message("busy@example.com"))
			if err == nil || notify.ClassOf(err) != notify.ClassTransient {
				t.Fatalf("451: %v, want transient", err)
			}
			// After failures the provider redials and goes on.
			if _, err := p.Send(ctx, message("carol@example.com")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSMTPWrongPasswordAndNoServer(t *testing.T) {
	t.Parallel()
	_, port, cliTLS := start(t, false)
	p, _ := email.New(email.Config{Host: "127.0.0.1", Port: port, Username: "herald", Password: "wrong",
		From: "noreply@bank.example", TLSConfig: cliTLS, Timeout: 2 * time.Second})
	if _, err := p.Send(context.Background(), message("a@example.com")); err == nil {
		t.Fatal("wrong password accepted")
	}
	p, _ = email.New(email.Config{Host: "127.0.0.1", Port: 1, From: "noreply@bank.example", TLSConfig: cliTLS, Timeout: time.Second})
	if _, err := p.Send(context.Background(), message("a@example.com")); err == nil || notify.ClassOf(err) != notify.ClassTransient {
		t.Fatalf("unreachable server: %v, want transient", err)
	}
}
