package benchmarks

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"
	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/adapters/kafka"
	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/benchmarks/loadgen"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/handlers"
	"github.com/heraldhq/herald/internal/testdb"
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
	// The fan-out's work for loadgen's events: SMS, email and in-app of one event.
	b.Run("event", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			x, err := r.Prepare(&e, "zh-CN", "Asia/Shanghai")
			if err != nil {
				b.Fatal(err)
			}
			for _, ch := range []notify.Channel{notify.ChannelSMS, notify.ChannelEmail, notify.ChannelInApp} {
				if _, err := x.Channel(ch); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

func openService(b *testing.B, url string, kafkaBrokers ...string) *service.Service {
	b.Helper()
	cfg, err := config.Default()
	if err != nil {
		b.Fatal(err)
	}
	cfg.DB, cfg.Addr, cfg.KafkaBrokers = url, "127.0.0.1:0", kafkaBrokers
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
		AccountID: fmt.Sprintf("62220202%08d", i%100), CustomerID: fmt.Sprintf("c%d", i%100), Amount: &amt, Currency: "CNY", Direction: "debit"}
}

// BenchmarkOutboxWrite: one core transaction with one outbox row (SQLite).
func BenchmarkOutboxWrite(b *testing.B) {
	svc := openService(b, "sqlite://"+filepath.Join(b.TempDir(), "bench.db"))
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

// backends are the databases the SQL benchmarks run on: the embedded SQLite file and
// the PostgreSQL and MySQL/MariaDB servers of the machine (HERALD_TEST_POSTGRES,
// HERALD_TEST_MYSQL), each in a fresh schema or database.
var backends = []struct {
	name string
	url  func(b *testing.B) string
}{
	{"sqlite", func(b *testing.B) string { return "sqlite://" + filepath.Join(b.TempDir(), "bench.db") }},
	{"postgres", func(b *testing.B) string { return testdb.Postgres(b) }},
	{"mysql", func(b *testing.B) string { return testdb.MySQL(b) }},
}

// BenchmarkSQLTopic publishes messages one per statement, and consumes b.N messages
// with one subscriber, one at a time (concurrency 1, watermill-sql's model) and a batch
// at a time (concurrency 250, Herald's default).
func BenchmarkSQLTopic(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db, err := sqlstore.Open(context.Background(), be.url(b))
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
			for _, conc := range []int{1, 250} {
				b.Run(fmt.Sprintf("subscribe-c%d", conc), func(b *testing.B) {
					benchSubscribe(b, db, pub, conc)
				})
			}
		})
	}
}

func benchSubscribe(b *testing.B, db *sqlstore.DB, pub message.Publisher, conc int) {
	topic := fmt.Sprintf("bench_sub_%d_%d", conc, b.N)
	if err := db.InitTopic(topic); err != nil {
		b.Fatal(err)
	}
	publishN(b, pub, topic)
	sub, err := db.NewSubscriber(sqlstore.TransportConfig{PollInterval: time.Millisecond, BatchSize: 250, Concurrency: conc}, nil)
	if err != nil {
		b.Fatal(err)
	}
	consumeN(b, sub, topic)
}

// publishN publishes b.N messages to topic, 500 per call.
func publishN(b *testing.B, pub message.Publisher, topic string) {
	msgs := make([]*message.Message, 0, 500)
	for i := 0; i < b.N; i++ {
		msgs = append(msgs, message.NewMessage(fmt.Sprint(i), payload))
		if len(msgs) == cap(msgs) || i == b.N-1 {
			if err := pub.Publish(topic, msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
}

// consumeN times receiving and acking b.N messages of topic, then closes sub.
func consumeN(b *testing.B, sub message.Subscriber, topic string) {
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
}

// BenchmarkClaimSent is the delivery store's dedup step for one delivery: claim the
// lease, then commit it as sent, from 64 goroutines (group commit at work) on each
// backend.
func BenchmarkClaimSent(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			db, err := sqlstore.Open(ctx, be.url(b))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if err := db.Migrate(ctx, []string{"sms"}); err != nil {
				b.Fatal(err)
			}
			ds := make([]notify.Delivery, b.N)
			for i := range ds {
				ds[i] = notify.Delivery{ID: fmt.Sprintf("d%d-%d", b.N, i), EventID: "e", EventType: notify.TypeTransactionPosted,
					Channel: notify.ChannelSMS, Lane: notify.LaneNormal, Address: "+8613800000000", OccurredAt: time.Now()}
			}
			for i := 0; i < len(ds); i += 500 {
				if err := db.InTx(ctx, func(tx *sql.Tx) error { return db.Deliveries().InsertQueued(ctx, tx, ds[i:min(i+500, len(ds))]) }); err != nil {
					b.Fatal(err)
				}
			}
			store := db.Deliveries()
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := ds[next.Add(1)-1].ID
					c, err := store.Claim(ctx, id, "bench", time.Minute)
					if err != nil || c.State != sqlstore.Claimed {
						b.Errorf("claim %s: %v %v", id, c.State, err)
						return
					}
					if err := store.MarkSent(ctx, id, notify.Receipt{Provider: "bench"}, time.Now()); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkFanOut is the fan-out of one event (decode, recipient lookup, render three
// channels, record and publish in one transaction) on SQLite, one event at a time:
// with the in-app message queued for its handler like the others, and written to the
// inbox by the fan-out itself (FanOutConfig.DirectInbox, Herald's default).
func BenchmarkFanOut(b *testing.B) {
	for _, direct := range []bool{false, true} {
		name := "inapp=queue"
		if direct {
			name = "inapp=direct"
		}
		b.Run(name, func(b *testing.B) {
			svc := openService(b, "sqlite://"+filepath.Join(b.TempDir(), "bench.db"))
			r, err := templates.New(templates.Config{})
			if err != nil {
				b.Fatal(err)
			}
			fan, err := handlers.NewFanOut(handlers.FanOutConfig{Directory: svc.DB.Recipients(), Store: svc.DB,
				Renderer: r, Channels: []notify.Channel{notify.ChannelSMS, notify.ChannelEmail, notify.ChannelInApp},
				Metrics: metrics.NewSet(), DirectInbox: direct}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				e := event("f-", i)
				p, _ := json.Marshal(e)
				if err := fan.Handle(message.NewMessage(e.ID, p)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKafka publishes to and consumes from an in-process Kafka cluster (kfake)
// with Herald's Kafka configuration (idempotent producer, acks=all).
func BenchmarkKafka(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cfg := kafka.Config{Brokers: c.ListenAddrs(), ConsumerGroup: "bench"}
	pub, err := kafka.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	topic := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	b.Run("publish", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := pub.Publish(topic, message.NewMessage("u", payload)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("subscribe", func(b *testing.B) {
		t := fmt.Sprintf("%s-sub-%d", topic, b.N)
		publishN(b, pub, t)
		sub, err := kafka.NewSubscriber(cfg, kafka.SubscriberConfig{}, watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		consumeN(b, sub, t)
	})
}

// BenchmarkPipeline commits b.N events (three channels each: sms, email, inapp) in
// transactions of 100 and waits until every delivery is sent through the sandbox
// providers, on each backend (SQL topics, default settings).
// The last, postgres+kafka, carries events and deliveries between stages on an
// in-process Kafka cluster (kfake) speaking the Kafka protocol.
func BenchmarkPipeline(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { benchPipeline(b, be.url(b), nil) })
	}
	b.Run("postgres+kafka", func(b *testing.B) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		benchPipeline(b, testdb.Postgres(b), c.ListenAddrs())
	})
}

func benchPipeline(b *testing.B, url string, brokers []string) {
	svc := openService(b, url, brokers...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.RunPipeline(ctx) }()
	defer func() { cancel(); <-done }()
	<-svc.Router.Running()
	prefix := fmt.Sprintf("p%d-", time.Now().UnixNano())
	start := loadgen.EndedDeliveriesIn(svc.Metrics)
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
	// Follow Herald's own counters, so that measuring does not compete with the pipeline
	// for the database (polling the pending count every 10 ms took 14% of the profile);
	// ask the database once they have counted three deliveries an event, or have stood
	// still for 300 ms.
	var last int64
	moved := time.Now()
	for {
		time.Sleep(10 * time.Millisecond)
		ended := loadgen.EndedDeliveriesIn(svc.Metrics) - start
		if ended != last {
			last, moved = ended, time.Now()
		}
		if ended < int64(3*b.N) && time.Since(moved) < 300*time.Millisecond {
			continue
		}
		pending, err := svc.DB.Deliveries().Pending(ctx, prefix)
		if err != nil {
			b.Fatal(err)
		}
		n, err := svc.DB.Notifications().CountPrefix(ctx, prefix)
		if err != nil {
			b.Fatal(err)
		}
		if pending == 0 && n == b.N {
			break
		}
		moved = time.Now()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
