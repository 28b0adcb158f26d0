package middleware

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/notify"
)

type parked struct {
	topic string
	msg   *message.Message
	due   time.Time
}

type parker struct {
	got  []parked
	fail error
}

func (p *parker) Add(_ context.Context, topic string, m *message.Message, due time.Time) error {
	if p.fail != nil {
		return p.fail
	}
	p.got = append(p.got, parked{topic, m, due})
	return nil
}

func TestRequeue(t *testing.T) {
	t.Parallel()
	p := &parker{}
	q := Requeue{Store: p, Initial: time.Second, Max: time.Minute, Metrics: metrics.NewSet(),
		TopicOf: func(*message.Message) string { return "deliveries.sms" }}
	var result error
	h := q.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, result })
	msg := func() *message.Message { return message.NewMessage("u1", []byte("x")) }

	result = errors.New("503")
	if _, err := h(msg()); err != nil {
		t.Fatalf("a parked message is acked, got %v", err)
	}
	got := p.got[0]
	if got.topic != "deliveries.sms" || got.msg.Metadata.Get(RequeuesKey) != "1" ||
		time.Until(got.due) > time.Second || got.msg.Metadata.Get(RequeueReasonKey) != "503" {
		t.Fatalf("transient: %+v %v", got, got.msg.Metadata)
	}

	second := msg()
	second.Metadata.Set(RequeuesKey, "3")
	result = notify.Defer(errors.New("breaker open"), 10*time.Second)
	if _, err := h(second); err != nil {
		t.Fatal(err)
	}
	got = p.got[1]
	if got.msg.Metadata.Get(RequeuesKey) != "3" || time.Until(got.due) < 9*time.Second {
		t.Fatalf("a deferral keeps the count and its wait: %v due in %s", got.msg.Metadata, time.Until(got.due))
	}

	result = notify.Poison(errors.New("bad json"))
	if _, err := h(msg()); notify.ClassOf(err) != notify.ClassPoison || len(p.got) != 2 {
		t.Fatalf("poison passes through: %v", err)
	}

	p.fail = errors.New("db down")
	result = errors.New("503")
	if _, err := h(msg()); err == nil {
		t.Fatal("when parking fails the error must stand (the message is redelivered)")
	}
}

func TestBackoffIsFullJitterUnderCeiling(t *testing.T) {
	t.Parallel()
	q := Requeue{Initial: time.Second, Max: 8 * time.Second}
	for n, ceiling := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 10: 8 * time.Second} {
		var top time.Duration
		for i := 0; i < 2000; i++ {
			d := q.Backoff(n)
			if d <= 0 || d > ceiling+time.Millisecond {
				t.Fatalf("backoff(%d) = %s, ceiling %s", n, d, ceiling)
			}
			top = max(top, d)
		}
		if top < ceiling*9/10 {
			t.Fatalf("backoff(%d) never came near its ceiling %s (max %s)", n, ceiling, top)
		}
	}
}
