package middleware

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/VictoriaMetrics/metrics"
)

func TestMetricsCountsDurationsAndErrors(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	done := make(chan struct{})
	r.AddConsumerHandler("fanout", "in", pubsub, func(*message.Message) error {
		switch calls.Add(1) {
		case 1:
			return errors.New("boom") // nacked, redelivered
		default:
			close(done)
			return nil
		}
	})
	r.AddMiddleware(Metrics{Set: set}.Middleware)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	<-r.Running()
	if err := pubsub.Publish("in", message.NewMessage("1", nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never succeeded")
	}
	_ = r.Close()
	var b bytes.Buffer
	set.WritePrometheus(&b)
	out := b.String()
	if !strings.Contains(out, `herald_handler_errors_total{handler="fanout"} 1`) {
		t.Errorf("error counter missing:\n%s", out)
	}
	if !strings.Contains(out, `herald_handler_duration_seconds_count{handler="fanout"} 2`) {
		t.Errorf("duration histogram missing:\n%s", out)
	}
}
