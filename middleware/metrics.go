// Package middleware holds Herald's own Watermill middleware; Watermill's are used
// where they are right (see router.New for the chain).
package middleware

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"
)

// Metrics records how long a handler takes and how often it fails, per handler:
// herald_handler_duration_seconds{handler} and herald_handler_errors_total{handler}.
type Metrics struct {
	Set *metrics.Set
}

// Middleware wraps a handler.
func (m Metrics) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		name := message.HandlerNameFromCtx(msg.Context())
		start := time.Now()
		out, err := h(msg)
		m.Set.GetOrCreateHistogram(fmt.Sprintf(`herald_handler_duration_seconds{handler=%q}`, name)).UpdateDuration(start)
		if err != nil {
			m.Set.GetOrCreateCounter(fmt.Sprintf(`herald_handler_errors_total{handler=%q}`, name)).Inc()
		}
		return out, err
	}
}
