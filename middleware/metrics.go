// Package middleware holds Herald's own Watermill middleware; Watermill's are used
// where they are right (see router.New for the chain).
package middleware

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"
)

// Metrics records how long a handler takes and how often it fails, per handler:
// herald_handler_duration_seconds{handler} and herald_handler_errors_total{handler}.
type Metrics struct {
	Set *metrics.Set
}

// durations is a handler's duration histogram, with the handler's name.
type durations struct {
	handler string
	h       *metrics.Histogram
}

// Middleware wraps a handler. The histogram is looked up once, not for every message
// (its name is formatted, then found in the set under a lock), while the handler's
// name stays the same.
func (m Metrics) Middleware(h message.HandlerFunc) message.HandlerFunc {
	var last atomic.Pointer[durations]
	return func(msg *message.Message) ([]*message.Message, error) {
		name := message.HandlerNameFromCtx(msg.Context())
		start := time.Now()
		out, err := h(msg)
		d := last.Load()
		if d == nil || d.handler != name {
			d = &durations{handler: name, h: m.Set.GetOrCreateHistogram(fmt.Sprintf(`herald_handler_duration_seconds{handler=%q}`, name))}
			last.Store(d)
		}
		d.h.UpdateDuration(start)
		if err != nil {
			m.Set.GetOrCreateCounter(fmt.Sprintf(`herald_handler_errors_total{handler=%q}`, name)).Inc()
		}
		return out, err
	}
}
