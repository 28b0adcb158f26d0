// Package handlers holds Herald's message handlers: the fan-out of events into one
// message per channel and address, channel delivery through providers, and the
// persistence of poisoned messages.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/internal/jsonx"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/templates"
)

// Directory finds recipients.
type Directory interface {
	Get(ctx context.Context, id string) (notify.Recipient, error)
}

// FanOutStore commits a fan-out atomically.
type FanOutStore interface {
	CommitFanOut(ctx context.Context, f sqlstore.FanOut) error
}

// FanOutConfig configures the fan-out handler.
type FanOutConfig struct {
	Directory Directory
	Store     FanOutStore
	Renderer  *templates.Renderer
	// Channels that have a delivery handler; targets on other channels are skipped.
	Channels []notify.Channel
	// Metrics receives the handler's metrics. Required.
	Metrics *metrics.Set
	// OTPTTL: one-time-password messages not sent this long after the event expire.
	// Default 5 minutes.
	OTPTTL time.Duration
	// DirectInbox writes in-app messages to the inbox in the fan-out's own transaction
	// (sqlstore.InboxDelivery) instead of queueing them for the in-app delivery handler.
	// For the built-in inbox provider only, and only where that handler would add
	// nothing: no recipient cap or rate limit on the channel (router.New decides).
	// Messages that can expire still take the queue, which checks their expiry.
	DirectInbox bool
}

// Validate checks the config.
func (c FanOutConfig) Validate() error {
	if c.Directory == nil || c.Store == nil || c.Renderer == nil || c.Metrics == nil {
		return errors.New("fan-out: directory, store, renderer and metrics are required")
	}
	if len(c.Channels) == 0 {
		return errors.New("fan-out: at least one channel is required")
	}
	return nil
}

// FanOut turns one event into one message per (channel, address).
type FanOut struct {
	cfg      FanOutConfig
	channels map[notify.Channel]bool
	log      *slog.Logger
	// inboxSent and inboxLatency are the in-app delivery handler's metrics, kept for
	// the messages written to the inbox directly (DirectInbox).
	inboxSent    *metrics.Counter
	inboxLatency *metrics.Histogram
}

// NewFanOut returns the fan-out handler.
func NewFanOut(cfg FanOutConfig, logger *slog.Logger) (*FanOut, error) {
	if cfg.OTPTTL == 0 {
		cfg.OTPTTL = 5 * time.Minute
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &FanOut{cfg: cfg, channels: map[notify.Channel]bool{}, log: logger}
	for _, c := range cfg.Channels {
		f.channels[c] = true
	}
	if cfg.DirectInbox {
		f.inboxSent = cfg.Metrics.GetOrCreateCounter(fmt.Sprintf(`herald_deliveries_total{channel=%q,status=%q}`,
			notify.ChannelInApp, notify.StatusSent))
		f.inboxLatency = cfg.Metrics.GetOrCreateHistogram(fmt.Sprintf(`herald_delivery_latency_seconds{channel=%q}`, notify.ChannelInApp))
	}
	return f, nil
}

// Handle decodes and validates the event (invalid input is poison), plans and renders
// its messages and commits them with their delivery records.
func (f *FanOut) Handle(msg *message.Message) error {
	ctx := msg.Context()
	e, err := notify.DecodeEvent(msg.Payload)
	if err != nil {
		f.cfg.Metrics.GetOrCreateCounter(`herald_events_consumed_total{type="invalid"}`).Inc()
		return err
	}
	if e.ID != msg.UUID {
		return notify.Poison(fmt.Errorf("event_id %q differs from the outbox row's uuid %q", e.ID, msg.UUID))
	}
	f.cfg.Metrics.GetOrCreateCounter(fmt.Sprintf(`herald_events_consumed_total{type=%q}`, metricLabel(e.Type))).Inc()

	r := notify.Recipient{ID: e.CustomerID}
	if e.CustomerID != "" {
		dir, err := f.cfg.Directory.Get(ctx, e.CustomerID)
		switch {
		case err == nil:
			r = dir
		case errors.Is(err, sqlstore.ErrNotFound):
		default:
			return fmt.Errorf("looking up recipient: %w", err)
		}
	}
	r.Contacts = notify.MergeContacts(r.Contacts, e.Contact)
	locale := f.cfg.Renderer.Locale(&e, r.Locale)

	n := sqlstore.Notification{ID: e.ID, Type: e.Type, CustomerID: e.CustomerID, OccurredAt: e.OccurredAt,
		Status: sqlstore.NotificationFannedOut}
	targets, why := notify.Plan(&e, &r)
	var kept []notify.Target
	for _, t := range targets {
		if f.channels[t.Channel] {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		n.Status, n.Reason = sqlstore.NotificationSkipped, why
		if why == "" {
			n.Reason = "no enabled channel"
		}
		return f.cfg.Store.CommitFanOut(ctx, sqlstore.FanOut{Notification: n})
	}

	lane := e.Lane()
	var expires *time.Time
	if e.TemplateName() == notify.TypeOTPRequested {
		t := e.OccurredAt.Add(f.cfg.OTPTTL)
		expires = &t
	}
	// One rendering for all of the event's channels: they share its parts.
	rendering, err := f.cfg.Renderer.Prepare(&e, locale, r.TimeZone)
	if err != nil {
		return err
	}
	planned := map[notify.Target]bool{}
	for _, t := range kept {
		planned[t] = true
	}
	fo := sqlstore.FanOut{Notification: n, Deliveries: make([]notify.Delivery, 0, len(kept)),
		Messages: map[string][]*message.Message{}}
	for _, t := range kept {
		content, err := rendering.Channel(t.Channel)
		if err != nil {
			return err
		}
		d := notify.Delivery{ID: notify.DeliveryID(e.ID, e.OccurredAt, t.Channel, t.Address), EventID: e.ID,
			EventType: e.Type, Channel: t.Channel, Lane: lane, RecipientID: r.ID, Address: notify.Address(t.Address),
			OccurredAt: e.OccurredAt}
		if t.Channel == notify.ChannelInApp && f.cfg.DirectInbox && expires == nil {
			fo.Inbox = append(fo.Inbox, sqlstore.InboxDelivery{Delivery: d, Title: content.InboxTitle(), Body: content.Text})
			continue
		}
		m := notify.Message{
			DeliveryID: d.ID, EventID: d.EventID, EventType: d.EventType, Channel: d.Channel, Lane: d.Lane,
			RecipientID: d.RecipientID, Address: d.Address, Locale: locale, Content: content, OccurredAt: d.OccurredAt,
			ExpiresAt: expires,
		}
		// The fallback travels rendered with the message, so the delivery handler can
		// queue it without the event.
		if fbc, ok := r.Preferences.Fallback[t.Channel]; ok && f.channels[fbc] {
			if addrs := r.Contacts.Addresses(fbc, r.ID); len(addrs) > 0 && !planned[notify.Target{Channel: fbc, Address: addrs[0]}] {
				fcontent, err := rendering.Channel(fbc)
				if err != nil {
					return err
				}
				fb := m
				fb.DeliveryID, fb.Channel, fb.Address, fb.Content = notify.DeliveryID(e.ID, e.OccurredAt, fbc, addrs[0]), fbc, notify.Address(addrs[0]), fcontent
				m.Fallback = &fb
			}
		}
		wm, err := EncodeMessage(m)
		if err != nil {
			return err
		}
		topic := sqlstore.DeliveryTopic(string(t.Channel), lane)
		fo.Messages[topic] = append(fo.Messages[topic], wm)
		fo.Deliveries = append(fo.Deliveries, d)
	}
	if err := f.cfg.Store.CommitFanOut(ctx, fo); err != nil {
		return fmt.Errorf("committing fan-out of event %s: %w", e.ID, err)
	}
	if len(fo.Inbox) > 0 {
		// Counted as the in-app handler counts its sends; a redelivered event counts
		// again, as a redelivered message would not (the handler finds it sent).
		at := time.Now()
		f.inboxSent.Add(len(fo.Inbox))
		for range fo.Inbox {
			f.inboxLatency.Update(at.Sub(e.OccurredAt).Seconds())
		}
	}
	return nil
}

// EncodeMessage is the Watermill message carrying m on its channel's topic.
func EncodeMessage(m notify.Message) (*message.Message, error) {
	payload, err := jsonx.Marshal(m)
	if err != nil {
		return nil, notify.Poison(fmt.Errorf("encoding message: %w", err))
	}
	wm := message.NewMessage(m.DeliveryID, payload)
	wm.Metadata.Set("delivery_id", m.DeliveryID)
	wm.Metadata.Set("event_id", m.EventID)
	wm.Metadata.Set("channel", string(m.Channel))
	if m.RecipientID != "" {
		wm.Metadata.Set("recipient_id", m.RecipientID)
	}
	return wm, nil
}

// metricLabel keeps label values to known event types so input cannot explode the
// number of series.
func metricLabel(typ string) string {
	if notify.KnownTemplate(typ) || typ == notify.TypeNotification {
		return typ
	}
	return "other"
}
