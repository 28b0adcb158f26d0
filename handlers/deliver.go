package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/notify"
)

// Provider sends a message on one channel. Errors are classified with notify.Permanent
// (the delivery fails), notify.Poison, or left transient (retried).
type Provider interface {
	Send(ctx context.Context, m notify.Message) (notify.Receipt, error)
}

// DeliveryStore tracks each delivery's status.
type DeliveryStore interface {
	Start(ctx context.Context, id string) (notify.Status, int, bool, error)
	MarkSent(ctx context.Context, id string, r notify.Receipt, at time.Time) error
	MarkRetrying(ctx context.Context, id, reason string) error
	MarkEnded(ctx context.Context, id string, st notify.Status, reason string) error
}

// DeliverConfig configures a channel's delivery handler.
type DeliverConfig struct {
	Channel  notify.Channel
	Provider Provider
	Store    DeliveryStore
	Metrics  *metrics.Set
	// SendTimeout bounds one provider call. Default 30s.
	SendTimeout time.Duration
}

// Deliver sends the messages of one channel through its provider.
type Deliver struct {
	cfg      DeliverConfig
	log      *slog.Logger
	latency  *metrics.Histogram
	counters map[notify.Status]*metrics.Counter
}

// statusRetrying labels transient failures in herald_deliveries_total.
const statusRetrying notify.Status = "retrying"

// NewDeliver returns a delivery handler.
func NewDeliver(cfg DeliverConfig, logger *slog.Logger) (*Deliver, error) {
	if cfg.Provider == nil || cfg.Store == nil || cfg.Metrics == nil || !cfg.Channel.Valid() {
		return nil, errors.New("deliver: channel, provider, store and metrics are required")
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = 30 * time.Second
	}
	d := &Deliver{
		cfg: cfg, log: logger,
		latency:  cfg.Metrics.GetOrCreateHistogram(fmt.Sprintf(`herald_delivery_latency_seconds{channel=%q}`, cfg.Channel)),
		counters: map[notify.Status]*metrics.Counter{},
	}
	for _, st := range []notify.Status{notify.StatusSent, notify.StatusFailed, notify.StatusExpired, statusRetrying} {
		d.counters[st] = cfg.Metrics.GetOrCreateCounter(fmt.Sprintf(`herald_deliveries_total{channel=%q,status=%q}`, cfg.Channel, st))
	}
	return d, nil
}

func (d *Deliver) count(st notify.Status) { d.counters[st].Inc() }

// Handle delivers one message. A delivery already terminal is acknowledged without
// sending again (redelivered messages are absorbed here). A transient failure is
// returned for retry; a permanent one ends the delivery as failed.
func (d *Deliver) Handle(msg *message.Message) error {
	var m notify.Message
	if err := json.Unmarshal(msg.Payload, &m); err != nil {
		return notify.Poison(fmt.Errorf("decoding %s message: %w", d.cfg.Channel, err))
	}
	if m.DeliveryID == "" || m.Address == "" {
		return notify.Poison(fmt.Errorf("%s message without delivery_id or address", d.cfg.Channel))
	}
	ctx := msg.Context()
	if m.ExpiresAt != nil && time.Now().After(*m.ExpiresAt) {
		d.count(notify.StatusExpired)
		return d.cfg.Store.MarkEnded(ctx, m.DeliveryID, notify.StatusExpired,
			fmt.Sprintf("not sent: expired at %s", m.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	st, attempts, ok, err := d.cfg.Store.Start(ctx, m.DeliveryID)
	if err != nil {
		return err
	}
	if !ok {
		d.log.Debug("delivery already ended, not sending again", "delivery_id", m.DeliveryID, "status", st)
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	receipt, err := d.cfg.Provider.Send(sctx, m)
	cancel()
	if err != nil {
		if notify.ClassOf(err) == notify.ClassTransient {
			d.count(statusRetrying)
			if serr := d.cfg.Store.MarkRetrying(ctx, m.DeliveryID, err.Error()); serr != nil {
				return errors.Join(err, serr)
			}
			return fmt.Errorf("sending %s (attempt %d): %w", m.DeliveryID, attempts, err)
		}
		d.count(notify.StatusFailed)
		d.log.Warn("delivery failed", "message", m, "attempt", attempts, "error", err)
		return d.cfg.Store.MarkEnded(ctx, m.DeliveryID, notify.StatusFailed, err.Error())
	}
	at := time.Now()
	if err := d.cfg.Store.MarkSent(ctx, m.DeliveryID, receipt, at); err != nil {
		return err
	}
	d.count(notify.StatusSent)
	if !m.OccurredAt.IsZero() {
		d.latency.Update(at.Sub(m.OccurredAt).Seconds())
	}
	return nil
}
