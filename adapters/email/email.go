// Package email delivers email over SMTP (github.com/wneessen/go-mail): STARTTLS or
// implicit TLS, AUTH, a text body with an HTML alternative, UTF-8 subjects, and a
// Message-ID derived from the delivery id. One SMTP connection is kept open and reused
// across sends; it is redialled after any failure.
package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/heraldhq/herald/notify"
)

// TLS modes.
const (
	TLSStartTLS = "starttls" // plain connection upgraded with STARTTLS, which is required
	TLSImplicit = "implicit" // TLS from the first byte (port 465)
	TLSNone     = "none"     // no TLS: only for a relay on the same host
)

// Config of an SMTP provider.
type Config struct {
	// Name of the provider in receipts and metrics.
	Name string
	Host string
	// Port; default 587 (starttls), 465 (implicit) or 25 (none).
	Port int
	// TLS is starttls (default), implicit or none.
	TLS string
	// Username and Password turn on AUTH (PLAIN, or LOGIN/CRAM-MD5 as the server offers).
	Username, Password string
	// From is the sender, e.g. "Herald Bank <noreply@bank.example>".
	From string
	// Timeout bounds dialling and each SMTP command. Default 15s.
	Timeout time.Duration
	// TLSConfig overrides the TLS settings (private CAs). Default: system roots,
	// ServerName = Host.
	TLSConfig *tls.Config
}

// Provider sends email over SMTP.
type Provider struct {
	cfg    Config
	client *mail.Client
	domain string

	mu   sync.Mutex
	conn *smtp.Client
}

// New checks cfg and returns a provider; it connects on the first send.
func New(cfg Config) (*Provider, error) {
	if cfg.Host == "" || cfg.From == "" {
		return nil, errors.New("email: host and from are required")
	}
	if cfg.Name == "" {
		cfg.Name = "smtp"
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSStartTLS
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	opts := []mail.Option{mail.WithTimeout(cfg.Timeout)}
	switch cfg.TLS {
	case TLSStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory), mail.WithPort(pick(cfg.Port, 587)))
	case TLSImplicit:
		opts = append(opts, mail.WithSSL(), mail.WithPort(pick(cfg.Port, 465)))
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS), mail.WithPort(pick(cfg.Port, 25)))
	default:
		return nil, fmt.Errorf("email: tls must be starttls, implicit or none, not %q", cfg.TLS)
	}
	tc := cfg.TLSConfig
	if tc == nil {
		tc = &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
	}
	opts = append(opts, mail.WithTLSConfig(tc))
	if cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(cfg.Username), mail.WithPassword(cfg.Password))
	}
	c, err := mail.NewClient(cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	msg := mail.NewMsg()
	if err := msg.From(cfg.From); err != nil {
		return nil, fmt.Errorf("email: from %q: %w", cfg.From, err)
	}
	domain := cfg.Host
	if addr := msg.GetFrom(); len(addr) > 0 {
		if _, d, ok := strings.Cut(addr[0].Address, "@"); ok {
			domain = d
		}
	}
	return &Provider{cfg: cfg, client: c, domain: domain}, nil
}

func pick(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// Send implements handlers.Provider.
func (p *Provider) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	msg := mail.NewMsg()
	if err := msg.From(p.cfg.From); err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("email from: %w", err))
	}
	if err := msg.To(string(m.Address)); err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("invalid email address: %w", err))
	}
	msg.Subject(m.Content.Subject)
	msg.SetMessageIDWithValue(m.DeliveryID + "@" + p.domain)
	msg.SetDate()
	msg.SetBodyString(mail.TypeTextPlain, m.Content.Text)
	if m.Content.HTML != "" {
		msg.AddAlternativeString(mail.TypeTextHTML, m.Content.HTML)
	}
	receipt := notify.Receipt{Provider: p.cfg.Name, ProviderMessageID: "<" + m.DeliveryID + "@" + p.domain + ">"}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		conn, err := p.client.DialToSMTPClientWithContext(ctx)
		if err != nil {
			return notify.Receipt{}, fmt.Errorf("email: connecting to %s: %w", p.cfg.Host, err)
		}
		p.conn = conn
	}
	err := p.client.SendWithSMTPClient(p.conn, msg)
	if err == nil {
		return receipt, nil
	}
	// Start the next message on a fresh session: the server may be mid-transaction or gone.
	_ = p.client.CloseWithSMTPClient(p.conn)
	p.conn = nil
	return notify.Receipt{}, classify(err)
}

// classify: a 5xx reply is permanent (recipient rejected, content refused); 4xx
// replies and connection failures are transient.
func classify(err error) error {
	var se *mail.SendError
	if errors.As(err, &se) && !se.IsTemp() && se.ErrorCode() >= 500 && se.ErrorCode() < 600 {
		return notify.Permanent(fmt.Errorf("email rejected (%d): %w", se.ErrorCode(), err))
	}
	return fmt.Errorf("email: %w", err)
}

// Close closes the SMTP connection.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return nil
	}
	err := p.client.CloseWithSMTPClient(p.conn)
	p.conn = nil
	return err
}
