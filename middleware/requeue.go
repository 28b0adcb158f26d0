package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/notify"
)

// Metadata keys set on a requeued message.
const (
	// RequeuesKey counts how many times transient failures sent the message back.
	RequeuesKey = "herald_requeues"
	// RequeueReasonKey is the error that requeued it last.
	RequeueReasonKey = "herald_requeue_reason"
)

// Parker stores a message until it is due on its topic again.
type Parker interface {
	Add(ctx context.Context, topic string, msg *message.Message, due time.Time) error
}

// Requeue is the persistent delayed requeue. It sits outside the in-process retry:
// a transient failure that survived those few quick retries, or a deferral (breaker
// open, throttled, leased elsewhere), parks a copy of the message in Store until its
// backoff has passed and acknowledges the original, so a long wait never holds a
// partition or a goroutine. If parking fails the error stands and the message is
// redelivered: nothing is lost. Poison and permanent failures pass through.
type Requeue struct {
	Store Parker
	// Initial is the ceiling of the first requeue's backoff; it doubles per requeue up
	// to Max, and each wait is uniformly random below its ceiling (full jitter).
	// Defaults 1s and 5m.
	Initial, Max time.Duration
	Metrics      *metrics.Set
	Log          *slog.Logger
	// TopicOf is the topic a message goes back to. Default: the topic the router
	// received it from.
	TopicOf func(*message.Message) string
}

// Backoff is the full-jitter wait before the n-th requeue (n >= 1).
func (q Requeue) Backoff(n int) time.Duration {
	initial, ceiling := q.Initial, q.Max
	if initial <= 0 {
		initial = time.Second
	}
	if ceiling <= 0 {
		ceiling = 5 * time.Minute
	}
	c := initial
	for i := 1; i < n && c < ceiling; i++ {
		c *= 2
	}
	c = min(c, ceiling)
	return time.Duration(rand.Int64N(int64(c))) + time.Millisecond //nolint:gosec // jitter, not security
}

// Middleware wraps a handler.
func (q Requeue) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err == nil {
			return out, nil
		}
		class := notify.ClassOf(err)
		if class == notify.ClassPoison || class == notify.ClassPermanent || errors.Is(err, context.Canceled) {
			return out, err
		}
		n, _ := strconv.Atoi(msg.Metadata.Get(RequeuesKey))
		wait := notify.AfterOf(err)
		if class == notify.ClassTransient {
			n++
			if wait <= 0 {
				wait = q.Backoff(n)
			}
		} else if wait <= 0 {
			wait = q.Backoff(1)
		}
		ctx := msg.Context()
		topic := message.SubscribeTopicFromCtx(ctx)
		if q.TopicOf != nil {
			topic = q.TopicOf(msg)
		}
		if topic == "" {
			return out, errors.Join(err, errors.New("requeue: the message's topic is unknown"))
		}
		c := msg.Copy()
		c.Metadata.Set(RequeuesKey, strconv.Itoa(n))
		reason := err.Error()
		if len(reason) > 500 {
			reason = reason[:500]
		}
		c.Metadata.Set(RequeueReasonKey, reason)
		if perr := q.Store.Add(ctx, topic, c, time.Now().Add(wait)); perr != nil {
			return out, errors.Join(err, fmt.Errorf("requeue failed, message will be redelivered: %w", perr))
		}
		q.Metrics.GetOrCreateCounter(fmt.Sprintf(`herald_requeued_total{handler=%q,class=%q}`,
			message.HandlerNameFromCtx(ctx), class)).Inc()
		if q.Log != nil {
			q.Log.Debug("message requeued", "uuid", msg.UUID, "topic", topic, "class", class.String(), "wait", wait, "reason", reason)
		}
		return nil, nil
	}
}
