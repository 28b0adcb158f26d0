package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/internal/jsonx"
	"github.com/heraldhq/herald/notify"
)

// Provider sends a message on one channel. Errors are classified with notify.Permanent
// (the delivery fails), notify.RetryAfter (transient, with the provider's wait), or
// left transient (retried). The delivery id is the provider's idempotency key where it
// accepts one.
type Provider interface {
	Send(ctx context.Context, m notify.Message) (notify.Receipt, error)
}

// DeliveryStore tracks each delivery's status and leases it to one worker at a time
// (sqlstore.Deliveries; adapters/redis wraps it to keep leases in Redis).
type DeliveryStore interface {
	Claim(ctx context.Context, id, owner string, lease time.Duration) (sqlstore.Claim, error)
	Release(ctx context.Context, id, owner, reason string, counted bool) error
	MarkSent(ctx context.Context, id string, r notify.Receipt, at time.Time) error
	MarkEnded(ctx context.Context, id string, st notify.Status, reason string) error
	// IDFor finds a delivery by event, channel and address (sqlstore.ErrNotFound if
	// none): the one a message with an unknown id stands for.
	IDFor(ctx context.Context, eventID string, ch notify.Channel, address notify.Address) (string, error)
}

// RetryBudget bounds the work spent on one delivery: after MaxAttempts provider calls
// or MaxAge since the delivery was created, a transient failure fails it.
type RetryBudget struct {
	MaxAttempts int
	MaxAge      time.Duration
}

// DefaultRetryBudget is used for event types without their own budget.
var DefaultRetryBudget = RetryBudget{MaxAttempts: 12, MaxAge: 24 * time.Hour}

// DeliverConfig configures a channel's delivery handler.
type DeliverConfig struct {
	Channel  notify.Channel
	Provider Provider
	// ProviderName names the provider in metrics and its breaker. Default: the channel.
	ProviderName string
	Store        DeliveryStore
	Metrics      *metrics.Set
	// SendTimeout bounds one provider call. Default 30s.
	SendTimeout time.Duration
	// Lease is how long a claim keeps other workers off a delivery; it must outlast a
	// send. Default twice SendTimeout.
	Lease time.Duration
	// Owner identifies this worker's leases. Default: a random id.
	Owner string
	// Budget is the default retry budget; Budgets overrides it per event type.
	Budget  RetryBudget
	Budgets map[string]RetryBudget
	// Breaker guards the provider (NewBreaker; shared by the provider's lanes). Nil
	// means none.
	Breaker *Breaker
	// RateLimiter paces the provider; nil sends as fast as it answers.
	RateLimiter RateLimiter
	// Cap limits messages per address per window; critical messages are exempt.
	Cap RecipientCap
	// Fallback records and publishes a message's fallback when it fails; nil disables
	// fallbacks.
	Fallback FanOutStore
}

// Deliver sends the messages of one channel through its provider.
type Deliver struct {
	cfg      DeliverConfig
	log      *slog.Logger
	breaker  *Breaker
	latency  *metrics.Histogram
	counters map[notify.Status]*metrics.Counter
	// stages time a delivery's path through the handler (stageNames).
	stages [numStages]*metrics.Histogram
}

// The stages of herald_delivery_stage_seconds, where a delivery's time goes between
// its record and the provider's acceptance: queued, from the fan-out's record to
// this handler's first claim (the fan-out's commit and the wait in the channel's
// topic; first attempts only, as a retry's includes its backoff); claim, the claim's
// commit; provider, the provider's call; record, the commit that marks it sent.
const (
	stageQueued = iota
	stageClaim
	stageProvider
	stageRecord
	numStages
)

var stageNames = [numStages]string{"queued", "claim", "provider", "record"}

// Labels of herald_deliveries_total besides the statuses.
const (
	statusRetrying notify.Status = "retrying" // transient failure, will retry
	statusDeferred notify.Status = "deferred" // not attempted: breaker, throttle or lease
	statusFallback notify.Status = "fallback" // a failed delivery's fallback was queued
)

var (
	errRecipientCap = errors.New("recipient message cap reached for this window")
	errUnknown      = errors.New("no such delivery")
)

// NewDeliver returns a delivery handler.
func NewDeliver(cfg DeliverConfig, logger *slog.Logger) (*Deliver, error) {
	if cfg.Provider == nil || cfg.Store == nil || cfg.Metrics == nil || !cfg.Channel.Valid() {
		return nil, errors.New("deliver: channel, provider, store and metrics are required")
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 30 * time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * cfg.SendTimeout
	}
	if cfg.Lease <= cfg.SendTimeout {
		return nil, fmt.Errorf("deliver: lease %s must be longer than the send timeout %s", cfg.Lease, cfg.SendTimeout)
	}
	if cfg.Owner == "" {
		cfg.Owner = uuid.NewString()
	}
	if cfg.ProviderName == "" {
		cfg.ProviderName = string(cfg.Channel)
	}
	if cfg.Budget == (RetryBudget{}) {
		cfg.Budget = DefaultRetryBudget
	}
	d := &Deliver{
		cfg: cfg, log: logger,
		breaker:  cfg.Breaker,
		latency:  cfg.Metrics.GetOrCreateHistogram(fmt.Sprintf(`herald_delivery_latency_seconds{channel=%q}`, cfg.Channel)),
		counters: map[notify.Status]*metrics.Counter{},
	}
	for i, st := range stageNames {
		d.stages[i] = cfg.Metrics.GetOrCreateHistogram(fmt.Sprintf(`herald_delivery_stage_seconds{channel=%q,stage=%q}`, cfg.Channel, st))
	}
	for _, st := range []notify.Status{notify.StatusSent, notify.StatusFailed, notify.StatusExpired,
		statusRetrying, statusDeferred, statusFallback} {
		d.counters[st] = cfg.Metrics.GetOrCreateCounter(fmt.Sprintf(`herald_deliveries_total{channel=%q,status=%q}`, cfg.Channel, st))
	}
	return d, nil
}

func (d *Deliver) count(st notify.Status) { d.counters[st].Inc() }

func (d *Deliver) budget(eventType string) RetryBudget {
	if b, ok := d.cfg.Budgets[eventType]; ok {
		return b
	}
	return d.cfg.Budget
}

// recordedID returns the id under which m's delivery is recorded: m.DeliveryID, or an id
// made before ids sorted by time (notify.DeliveryID). A message for no recorded delivery
// is poison (what names the message in its reason: "" or "expired ").
func (d *Deliver) recordedID(ctx context.Context, m notify.Message, what string) (string, error) {
	id, err := d.cfg.Store.IDFor(ctx, m.EventID, m.Channel, m.Address)
	if errors.Is(err, sqlstore.ErrNotFound) {
		return "", notify.Poison(fmt.Errorf("%s%s message for delivery %s: %w", what, d.cfg.Channel, m.DeliveryID, errUnknown))
	}
	return id, err
}

// Handle delivers one message:
//
//  1. an expired message (a stale one-time password) is not sent: status expired;
//  2. while the provider's breaker is open the message is deferred, not attempted;
//  3. the delivery is claimed under a lease: one already terminal is acknowledged
//     without sending (redelivery absorbed), one leased by a live worker is deferred;
//  4. the per-recipient cap and the provider's rate limit are taken;
//  5. the provider is called through the breaker. Success commits the lease (sent);
//     a transient failure releases it and returns the error for retry, unless the
//     retry budget is spent; a permanent failure (or a spent budget) fails the
//     delivery and queues the recipient's fallback channel, if any.
func (d *Deliver) Handle(msg *message.Message) error {
	var m notify.Message
	if err := jsonx.Unmarshal(msg.Payload, &m); err != nil {
		return notify.Poison(fmt.Errorf("decoding %s message: %w", d.cfg.Channel, err))
	}
	if m.DeliveryID == "" || m.Address == "" {
		return notify.Poison(fmt.Errorf("%s message without delivery_id or address", d.cfg.Channel))
	}
	ctx := msg.Context()
	if m.ExpiresAt != nil && time.Now().After(*m.ExpiresAt) {
		// Looked up rather than taken from the message: the delivery may be recorded
		// under an earlier id (see the claim below). Expired messages are rare (a one-time
		// password past its lifetime), so the extra read is off the hot path.
		id, err := d.recordedID(ctx, m, "expired ")
		if err != nil {
			return err
		}
		d.count(notify.StatusExpired)
		return d.cfg.Store.MarkEnded(ctx, id, notify.StatusExpired,
			fmt.Sprintf("not sent: expired at %s", m.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	if d.breaker.Open() {
		d.count(statusDeferred)
		return notify.Defer(errBreakerOpen, d.breaker.openFor)
	}
	claimed := time.Now()
	c, err := d.cfg.Store.Claim(ctx, m.DeliveryID, d.cfg.Owner, d.cfg.Lease)
	d.stages[stageClaim].UpdateDuration(claimed)
	if errors.Is(err, sqlstore.ErrNotFound) {
		// An event redelivered after an upgrade gets ids that sort by time, while its
		// deliveries were recorded under the ids made before (the fan-out did not
		// record them again): this message stands for that delivery.
		id, ferr := d.recordedID(ctx, m, "")
		if ferr != nil {
			return ferr
		}
		if id != m.DeliveryID {
			d.log.Info("delivery recorded under an earlier id", "delivery_id", m.DeliveryID, "recorded_id", id)
			m.DeliveryID = id
			c, err = d.cfg.Store.Claim(ctx, m.DeliveryID, d.cfg.Owner, d.cfg.Lease)
		}
	}
	if errors.Is(err, sqlstore.ErrNotFound) {
		return notify.Poison(fmt.Errorf("%s message for delivery %s: %w", d.cfg.Channel, m.DeliveryID, errUnknown))
	}
	if err != nil {
		return err
	}
	switch c.State {
	case sqlstore.ClaimDone:
		d.log.Debug("delivery already ended, not sending again", "delivery_id", m.DeliveryID, "status", c.Status)
		return nil
	case sqlstore.ClaimBusy:
		d.count(statusDeferred)
		return notify.Defer(fmt.Errorf("delivery %s is leased by another worker", m.DeliveryID),
			time.Until(c.LeaseUntil)+100*time.Millisecond)
	}
	// From here this worker holds the lease: every path ends it.
	if c.Attempts == 1 {
		d.stages[stageQueued].Update(claimed.Sub(c.CreatedAt).Seconds())
	}
	if d.cfg.Cap != nil && m.Lane != notify.LaneCritical {
		ok, next, err := d.cfg.Cap.Take(ctx, string(m.Address))
		if err != nil {
			return d.release(ctx, m, err, false)
		}
		if !ok {
			d.count(statusDeferred)
			return d.release(ctx, m, notify.Defer(errRecipientCap, time.Until(next)), false)
		}
	}
	if d.cfg.RateLimiter != nil {
		if err := d.cfg.RateLimiter.Wait(ctx); err != nil {
			return d.release(ctx, m, fmt.Errorf("waiting for the %s rate limit: %w", d.cfg.ProviderName, err), false)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	called := time.Now()
	receipt, rejected, err := d.breaker.Call(func() (notify.Receipt, error) { return d.cfg.Provider.Send(sctx, m) })
	cancel()
	if !rejected {
		d.stages[stageProvider].UpdateDuration(called)
	}
	if err != nil {
		switch {
		case rejected:
			d.count(statusDeferred)
			return d.release(ctx, m, err, false)
		case notify.ClassOf(err) == notify.ClassTransient:
			b := d.budget(m.EventType)
			if c.Attempts >= b.MaxAttempts || time.Since(c.CreatedAt) >= b.MaxAge {
				return d.fail(ctx, m, fmt.Sprintf("retry budget spent (%d attempts, %s): %v",
					c.Attempts, time.Since(c.CreatedAt).Round(time.Second), err))
			}
			d.count(statusRetrying)
			return d.release(ctx, m, fmt.Errorf("sending %s (attempt %d): %w", m.DeliveryID, c.Attempts, err), true)
		default:
			return d.fail(ctx, m, err.Error())
		}
	}
	at := time.Now()
	// The provider has the message: recording that must not be given up lightly, or
	// the lease expires and another attempt sends it twice.
	err = d.cfg.Store.MarkSent(ctx, m.DeliveryID, receipt, at)
	for i := 0; err != nil && i < 5 && ctx.Err() == nil; i++ {
		time.Sleep(time.Duration(100<<i) * time.Millisecond)
		err = d.cfg.Store.MarkSent(ctx, m.DeliveryID, receipt, at)
	}
	if err != nil {
		return err
	}
	d.stages[stageRecord].UpdateDuration(at)
	d.count(notify.StatusSent)
	if !m.OccurredAt.IsZero() {
		d.latency.Update(at.Sub(m.OccurredAt).Seconds())
	}
	return nil
}

// release gives the lease back after cause and returns cause (with the release's own
// error, if any). counted says whether the provider was called.
func (d *Deliver) release(ctx context.Context, m notify.Message, cause error, counted bool) error {
	if err := d.cfg.Store.Release(ctx, m.DeliveryID, d.cfg.Owner, cause.Error(), counted); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// fail ends the delivery as failed and queues its fallback. The fallback is recorded
// first: if ending the delivery then fails, the redelivered message fails again and
// the fallback's deterministic id absorbs the repeat.
func (d *Deliver) fail(ctx context.Context, m notify.Message, reason string) error {
	if m.Fallback != nil && d.cfg.Fallback != nil {
		fb := *m.Fallback
		wm, err := EncodeMessage(fb)
		if err != nil {
			return err
		}
		ds := []notify.Delivery{{ID: fb.DeliveryID, EventID: fb.EventID, EventType: fb.EventType, Channel: fb.Channel,
			Lane: fb.Lane, RecipientID: fb.RecipientID, Address: fb.Address, OccurredAt: fb.OccurredAt, FallbackOf: m.DeliveryID}}
		topic := sqlstore.DeliveryTopic(string(fb.Channel), fb.Lane)
		if err := d.cfg.Fallback.CommitFanOut(ctx, sqlstore.FanOut{Deliveries: ds, Messages: map[string][]*message.Message{topic: {wm}}}); err != nil {
			return fmt.Errorf("queueing fallback of %s: %w", m.DeliveryID, err)
		}
		d.count(statusFallback)
		reason += "; fallback " + string(fb.Channel) + " queued"
	}
	if err := d.cfg.Store.MarkEnded(ctx, m.DeliveryID, notify.StatusFailed, reason); err != nil {
		return err
	}
	d.count(notify.StatusFailed)
	d.log.Warn("delivery failed", "message", m, "reason", reason)
	return nil
}
