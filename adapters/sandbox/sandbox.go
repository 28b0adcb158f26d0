// Package sandbox is a provider for every channel that sends nothing: it records what
// would have been sent (a SQL row and a log line with the address masked), so demos,
// tests and load tests exercise the whole pipeline without reaching a customer.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// Recorder stores sandbox sends.
type Recorder interface {
	Add(ctx context.Context, r sqlstore.SandboxSend) error
}

// Config of a sandbox provider.
type Config struct {
	Recorder Recorder
	// Latency is added to every send, to imitate a real provider. Default none.
	Latency time.Duration
	// Faults injects failures, for tests, demos and load tests.
	Faults Faults
}

// Faults are failures a sandbox provider injects.
type Faults struct {
	// FailRate is the probability (0..1) that a send fails transiently (as a
	// provider's 503 would), before anything is recorded.
	FailRate float64
	// PermanentFailRate is the probability that a send is rejected permanently (as an
	// invalid address would be).
	PermanentFailRate float64
	// Outages are windows, from the provider's start, in which every send fails
	// transiently.
	Outages []Outage
}

// Outage is a window in which a provider is down.
type Outage struct {
	Start, Duration time.Duration
}

// Provider is the sandbox provider.
type Provider struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
}

// New returns a sandbox provider.
func New(cfg Config, logger *slog.Logger) (*Provider, error) {
	if cfg.Recorder == nil {
		return nil, errors.New("sandbox: a recorder is required")
	}
	if cfg.Latency < 0 {
		return nil, errors.New("sandbox: latency must not be negative")
	}
	f := cfg.Faults
	if f.FailRate < 0 || f.PermanentFailRate < 0 || f.FailRate+f.PermanentFailRate > 1 {
		return nil, errors.New("sandbox: failure rates must be in 0..1 and add up to at most 1")
	}
	return &Provider{cfg: cfg, log: logger, started: time.Now()}, nil
}

// ErrInjected is the cause of every injected failure.
var ErrInjected = errors.New("sandbox: injected failure")

// Send records the message.
func (p *Provider) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	since := time.Since(p.started)
	for _, o := range p.cfg.Faults.Outages {
		if since >= o.Start && since < o.Start+o.Duration {
			return notify.Receipt{}, fmt.Errorf("%w: %s provider unavailable (outage)", ErrInjected, m.Channel)
		}
	}
	if f := p.cfg.Faults; f.FailRate > 0 || f.PermanentFailRate > 0 {
		switch x := rand.Float64(); { //nolint:gosec // fault injection, not security
		case x < f.FailRate:
			return notify.Receipt{}, fmt.Errorf("%w: %s provider answered 503", ErrInjected, m.Channel)
		case x < f.FailRate+f.PermanentFailRate:
			return notify.Receipt{}, notify.Permanent(fmt.Errorf("%w: %s provider rejected the address", ErrInjected, m.Channel))
		}
	}
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
	// The sandbox names each message itself, as a provider does; it need not read an id
	// back from its record. Time-ordered, so the ids sort as the sends happened.
	mid, err := uuid.NewV7()
	if err != nil {
		return notify.Receipt{}, fmt.Errorf("sandbox %s: message id: %w", m.Channel, err)
	}
	id := "sbx-" + mid.String()
	if err := p.cfg.Recorder.Add(ctx, sqlstore.SandboxSend{
		DeliveryID: m.DeliveryID, MessageID: id, Channel: string(m.Channel), Address: string(m.Address),
		Subject: subject, Body: body, AcceptedAt: time.Now(),
	}); err != nil {
		return notify.Receipt{}, fmt.Errorf("sandbox %s: %w", m.Channel, err)
	}
	if p.log.Enabled(ctx, slog.LevelInfo) { // the arguments cost allocations even when not logged
		p.log.InfoContext(ctx, "sandbox send", "message", m, "subject", subject, "chars", utf8.RuneCountInString(body))
	}
	return notify.Receipt{Provider: "sandbox", ProviderMessageID: id}, nil
}

// FaultSpec is the command-line form of per-channel faults: a value for every
// channel ("0.3", "200ms") or a list of channel=value ("sms=0.3,email=0.1"); outages
// are channel:start+duration ("sms:10s+30s").
type FaultSpec struct {
	FailRate, PermanentFailRate, Latency string
	Outages                              []string
}

// Parse returns the faults and latency of each channel.
func (s FaultSpec) Parse(channels []notify.Channel) (map[notify.Channel]Faults, map[notify.Channel]time.Duration, error) {
	faults := map[notify.Channel]Faults{}
	lat := map[notify.Channel]time.Duration{}
	err := perChannel(s.FailRate, channels, func(ch notify.Channel, v string) error {
		f, err := rate(v)
		fs := faults[ch]
		fs.FailRate = f
		faults[ch] = fs
		return err
	})
	if err == nil {
		err = perChannel(s.PermanentFailRate, channels, func(ch notify.Channel, v string) error {
			f, err := rate(v)
			fs := faults[ch]
			fs.PermanentFailRate = f
			faults[ch] = fs
			return err
		})
	}
	if err == nil {
		err = perChannel(s.Latency, channels, func(ch notify.Channel, v string) error {
			d, err := time.ParseDuration(v)
			if err == nil && d < 0 {
				err = errors.New("must not be negative")
			}
			lat[ch] = d
			return err
		})
	}
	if err != nil {
		return nil, nil, err
	}
	for _, o := range s.Outages {
		ch, window, ok := strings.Cut(o, ":")
		start, dur, ok2 := strings.Cut(window, "+")
		if !ok || !ok2 || !notify.Channel(ch).Valid() {
			return nil, nil, fmt.Errorf("outage %q: want channel:start+duration, e.g. sms:10s+30s", o)
		}
		st, err1 := time.ParseDuration(start)
		d, err2 := time.ParseDuration(dur)
		if err1 != nil || err2 != nil || st < 0 || d <= 0 {
			return nil, nil, fmt.Errorf("outage %q: start and duration must be durations, e.g. sms:10s+30s", o)
		}
		fs := faults[notify.Channel(ch)]
		fs.Outages = append(fs.Outages, Outage{Start: st, Duration: d})
		faults[notify.Channel(ch)] = fs
	}
	for ch, f := range faults {
		if f.FailRate+f.PermanentFailRate > 1 {
			return nil, nil, fmt.Errorf("%s: failure rates add up to more than 1", ch)
		}
	}
	return faults, lat, nil
}

func rate(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1 {
		return 0, errors.New("must be a number from 0 to 1")
	}
	return f, nil
}

func perChannel(spec string, channels []notify.Channel, set func(notify.Channel, string) error) error {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil
	}
	if !strings.Contains(spec, "=") {
		for _, ch := range channels {
			if err := set(ch, spec); err != nil {
				return fmt.Errorf("%q: %w", spec, err)
			}
		}
		return nil
	}
	for _, part := range strings.Split(spec, ",") {
		ch, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !notify.Channel(ch).Valid() {
			return fmt.Errorf("%q: want channel=value, e.g. sms=0.3", part)
		}
		if err := set(notify.Channel(ch), v); err != nil {
			return fmt.Errorf("%q: %w", part, err)
		}
	}
	return nil
}
