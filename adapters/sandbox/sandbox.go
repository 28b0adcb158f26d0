// Package sandbox is a provider for every channel that sends nothing: it records what
// would have been sent (a SQL row and a log line with the address masked), so demos,
// tests and load tests exercise the whole pipeline without reaching a customer.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// Recorder stores sandbox sends.
type Recorder interface {
	Add(ctx context.Context, r sqlstore.SandboxSend) (int64, error)
}

// Config of a sandbox provider.
type Config struct {
	Recorder Recorder
	// Latency is added to every send, to imitate a real provider. Default none.
	Latency time.Duration
}

// Provider is the sandbox provider.
type Provider struct {
	cfg Config
	log *slog.Logger
}

// New returns a sandbox provider.
func New(cfg Config, logger *slog.Logger) (*Provider, error) {
	if cfg.Recorder == nil {
		return nil, errors.New("sandbox: a recorder is required")
	}
	if cfg.Latency < 0 {
		return nil, errors.New("sandbox: latency must not be negative")
	}
	return &Provider{cfg: cfg, log: logger}, nil
}

// Send records the message.
func (p *Provider) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	if p.cfg.Latency > 0 {
		t := time.NewTimer(p.cfg.Latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return notify.Receipt{}, ctx.Err()
		case <-t.C:
		}
	}
	body := m.Content.Text
	subject := m.Content.Subject
	if subject == "" {
		subject = m.Content.Title
	}
	id, err := p.cfg.Recorder.Add(ctx, sqlstore.SandboxSend{
		DeliveryID: m.DeliveryID, Channel: string(m.Channel), Address: string(m.Address),
		Subject: subject, Body: body, AcceptedAt: time.Now(),
	})
	if err != nil {
		return notify.Receipt{}, fmt.Errorf("sandbox %s: %w", m.Channel, err)
	}
	p.log.Info("sandbox send", "message", m, "subject", subject, "chars", len([]rune(body)))
	return notify.Receipt{Provider: "sandbox", ProviderMessageID: "sbx-" + strconv.FormatInt(id, 10)}, nil
}
