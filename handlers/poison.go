package handlers

import (
	"context"
	"errors"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// PoisonStore persists poisoned messages.
type PoisonStore interface {
	Add(ctx context.Context, e sqlstore.PoisonEntry) error
}

// PoisonRecorder is the publisher behind Watermill's PoisonQueue middleware: instead
// of a topic nobody reads, it persists each poisoned message with its reason, topic and
// handler, and marks the delivery it carried (if any) as poisoned.
type PoisonRecorder struct {
	Store      PoisonStore
	Deliveries DeliveryStore
	Metrics    *metrics.Set
	Log        *slog.Logger
}

// Publish stores the poisoned messages. Returning an error makes the router nack the
// message, so nothing is lost when the store is down.
func (p *PoisonRecorder) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		ctx := m.Context()
		md := map[string]string(m.Metadata)
		e := sqlstore.PoisonEntry{
			MessageUUID: m.UUID,
			Topic:       md[middleware.PoisonedTopicKey],
			Handler:     md[middleware.PoisonedHandlerKey],
			Reason:      md[middleware.ReasonForPoisonedKey],
			Payload:     []byte(m.Payload),
			Metadata:    md,
		}
		if err := p.Store.Add(ctx, e); err != nil {
			return err
		}
		if id := md["delivery_id"]; id != "" {
			if err := p.Deliveries.MarkEnded(ctx, id, notify.StatusPoisoned, e.Reason); err != nil {
				return err
			}
			p.Metrics.GetOrCreateCounter(`herald_deliveries_total{channel="` + metricChannel(md["channel"]) + `",status="poisoned"}`).Inc()
		}
		p.Metrics.GetOrCreateCounter(`herald_poisoned_total{handler="` + metricHandler(e.Handler) + `"}`).Inc()
		p.Log.Warn("message poisoned", "uuid", m.UUID, "topic", e.Topic, "handler", e.Handler, "reason", e.Reason)
	}
	return nil
}

// Close does nothing.
func (p *PoisonRecorder) Close() error { return nil }

func metricChannel(c string) string {
	if notify.Channel(c).Valid() {
		return c
	}
	return "other"
}

func metricHandler(h string) string {
	for _, r := range h {
		if r != '_' && r != '.' && r != '-' && (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return "other"
		}
	}
	return h
}

// ShouldRetry is the retry filter: poison and permanent failures are never retried.
func ShouldRetry(err error) bool {
	return notify.ClassOf(err) == notify.ClassTransient && !errors.Is(err, context.Canceled)
}
