package benchmarks

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/shopspring/decimal"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/service"
	"github.com/heraldhq/herald/templates"
)

var payload = []byte(`{"event_id":"e1","type":"transaction.posted","occurred_at":"2026-11-22T10:00:00Z",
"account_id":"6222020200112233","customer_id":"c1","amount":"1234.56","balance_after":"10.00",
"currency":"CNY","direction":"debit","counterparty":"Coffee Co","branch":"Pudong"}`)

func BenchmarkDecodeValidate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := notify.DecodeEvent(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	r, err := templates.New(templates.Config{})
	if err != nil {
		b.Fatal(err)
	}
	e, _ := notify.DecodeEvent(payload)
	for _, ch := range []notify.Channel{notify.ChannelSMS, notify.ChannelEmail, notify.ChannelWeChat} {
		b.Run(string(ch), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Render(&e, ch, "zh-CN", "Asia/Shanghai"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func openService(b *testing.B) *service.Service {
	b.Helper()
	cfg, err := config.Default()
	if err != nil {
		b.Fatal(err)
	}
	cfg.DB, cfg.Addr = "sqlite://"+filepath.Join(b.TempDir(), "bench.db"), "127.0.0.1:0"
	cfg.Channels, cfg.PollInterval = []string{"sms", "email", "inapp"}, 5*time.Millisecond
	svc, err := service.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Close() })
	for i := 0; i < 100; i++ {
		_, err := svc.DB.Recipients().Put(context.Background(), notify.Recipient{ID: fmt.Sprintf("c%d", i),
			Contacts: notify.Contacts{Phone: notify.Phone(fmt.Sprintf("+86138%08d", i)), Email: notify.Email(fmt.Sprintf("c%d@example.com", i))}})
		if err != nil {
			b.Fatal(err)
		}
	}
	return svc
}

func event(prefix string, i int) notify.Event {
	amt := decimal.New(int64(1000+i), -2)
	return notify.Event{ID: fmt.Sprintf("%s%08d", prefix, i), Type: notify.TypeTransactionPosted, OccurredAt: time.Now().UTC(),
		AccountID: "6222020200112233", CustomerID: fmt.Sprintf("c%d", i%100), Amount: &amt, Currency: "CNY", Direction: "debit"}
}

// BenchmarkOutboxWrite: one core transaction with one outbox row (SQLite).
func BenchmarkOutboxWrite(b *testing.B) {
	svc := openService(b)
	w, _ := outbox.New(outbox.Config{})
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		err := svc.DB.InTx(ctx, func(tx *sql.Tx) error { return w.Write(ctx, tx, event("w-", i)) })
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSQLiteTopic publishes b.N messages and consumes them with one subscriber.
func BenchmarkSQLiteTopic(b *testing.B) {
	db, err := sqlstore.Open(context.Background(), "sqlite://"+filepath.Join(b.TempDir(), "topic.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	pub, _ := db.NewPublisher(nil)
	if err := db.InitTopic("bench"); err != nil {
		b.Fatal(err)
	}
	b.Run("publish", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := pub.Publish("bench", message.NewMessage("u", payload)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("subscribe", func(b *testing.B) {
		topic := fmt.Sprintf("bench_sub_%d", b.N)
		if err := db.InitTopic(topic); err != nil {
			b.Fatal(err)
		}
		msgs := make([]*message.Message, 0, 500)
		for i := 0; i < b.N; i++ {
			msgs = append(msgs, message.NewMessage("u", payload))
			if len(msgs) == cap(msgs) || i == b.N-1 {
				if err := pub.Publish(topic, msgs...); err != nil {
					b.Fatal(err)
				}
				msgs = msgs[:0]
			}
		}
		sub, err := db.NewSubscriber(sqlstore.TransportConfig{PollInterval: time.Millisecond}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
		b.ReportAllocs()
		b.ResetTimer()
		ch, err := sub.Subscribe(context.Background(), topic)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			(<-ch).Ack()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkPipeline commits b.N events (three channels each: sms, email, inapp) and
// waits until every delivery is sent through the sandbox providers.
func BenchmarkPipeline(b *testing.B) {
	svc := openService(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.RunPipeline(ctx) }()
	defer func() { cancel(); <-done }()
	<-svc.Router.Running()
	prefix := fmt.Sprintf("p%d-", time.Now().UnixNano())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		n := min(100, b.N-i)
		events := make([]notify.Event, n)
		for j := range events {
			events[j] = event(prefix, i+j)
		}
		if err := svc.DB.InTx(ctx, func(tx *sql.Tx) error { return svc.Outbox.Write(ctx, tx, events...) }); err != nil {
			b.Fatal(err)
		}
	}
	// Poll cheaply (unfinished deliveries only) so that measuring does not compete with
	// the pipeline for the CPU; count the fan-outs only once nothing is pending.
	for {
		time.Sleep(10 * time.Millisecond)
		pending, err := svc.DB.Deliveries().Pending(ctx, prefix)
		if err != nil {
			b.Fatal(err)
		}
		if pending > 0 {
			continue
		}
		n, err := svc.DB.Notifications().CountPrefix(ctx, prefix)
		if err != nil {
			b.Fatal(err)
		}
		if n == b.N {
			break
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
