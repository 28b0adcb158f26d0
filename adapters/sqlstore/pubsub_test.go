package sqlstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/internal/suite"
	"github.com/heraldhq/herald/internal/testdb"
)

// runPubSubSuite runs the suite; each constructor call gets its own small connection
// pool on PostgreSQL and MySQL, like a separate Herald instance (a shared pool can be
// exhausted by subscribers whose transactions wait for the consumer group's lock, and
// then the lock holder cannot get a connection: a deadlock of the test, not of Herald,
// which subscribes once per topic); one shared pool on SQLite (one process per file).
func runPubSubSuite(t *testing.T, url string, features tests.Features, skip map[string]bool) {
	runPubSubSuiteWith(t, url, sqlstore.TransportConfig{}, features, skip)
}

func runPubSubSuiteWith(t *testing.T, url string, tc sqlstore.TransportConfig, features tests.Features, skip map[string]bool) {
	open := func(t *testing.T) *sqlstore.DB {
		db, err := sqlstore.OpenWith(context.Background(), url, sqlstore.Options{MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	shared := open(t)
	constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		db := shared
		if shared.Dialect != sqlstore.SQLite {
			db = open(t)
		}
		pub, err := db.NewPublisher(nil)
		if err != nil {
			t.Fatal(err)
		}
		tc := tc
		tc.ConsumerGroup = group
		sub, err := db.NewSubscriber(tc, suiteLogger)
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	single := func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, "test") }
	suite.Run(t, features, single, constructor, skip)
}

// TestSQLitePubSub runs Watermill's universal Pub/Sub suite against the SQLite topics.
// Features are what the adapter truly has: persistent, ordered, consumer groups; it
// is at least once (not exactly once) by design, see SQLiteBeginner.
func TestSQLitePubSub(t *testing.T) {
	runPubSubSuite(t, "sqlite://"+filepath.Join(t.TempDir(), "pubsub.db"), tests.Features{
		ConsumerGroups: true, ExactlyOnceDelivery: false, GuaranteedOrder: true, Persistent: true,
	}, nil)
}

// TestPostgresPubSub runs the suite against Herald's PostgreSQL configuration
// (watermill-sql's log schema with transaction ids; a subscription holds its consumer
// group with an advisory lock, which makes delivery exactly once per consumer group in
// normal operation), in the suite's short mode.
func TestPostgresPubSub(t *testing.T) {
	runPubSubSuite(t, testdb.Postgres(t), tests.Features{
		ConsumerGroups: true, ExactlyOnceDelivery: true, GuaranteedOrder: true, Persistent: true,
		ForceShort: true,
	}, nil)
}

// TestMySQLPubSub runs the suite against Herald's MySQL/MariaDB queue schema: no
// consumer groups (the queue is shared), exactly once, ordered for one subscriber
// (several subscribers of one topic take batches side by side).
func TestMySQLPubSub(t *testing.T) {
	runPubSubSuite(t, testdb.MySQL(t), tests.Features{
		ConsumerGroups: false, ExactlyOnceDelivery: true, GuaranteedOrder: true, Persistent: true,
		GuaranteedOrderWithSingleSubscriber: true,
	}, nil)
}

var suiteLogger = watermill.NopLogger{}

func TestSQLitePubSubConcurrent(t *testing.T) {
	runPubSubSuiteWith(t, "sqlite://"+filepath.Join(t.TempDir(), "pubsub.db"), sqlstore.TransportConfig{Concurrency: 16}, tests.Features{
		ConsumerGroups: true, ExactlyOnceDelivery: false, GuaranteedOrder: false, Persistent: true,
	}, nil)
}

// TestPostgresPubSubKeyed: with one key for every message, a concurrent subscriber
// must keep the suite's ordering guarantees.
func TestPostgresPubSubKeyed(t *testing.T) {
	one := func(string, *message.Message) string { return "k" }
	runPubSubSuiteWith(t, testdb.Postgres(t), sqlstore.TransportConfig{Concurrency: 16, Key: one}, tests.Features{
		ConsumerGroups: true, ExactlyOnceDelivery: true, GuaranteedOrder: true, Persistent: true,
		ForceShort: true,
	}, nil)
}

// TestSubscriberConcurrency: up to Concurrency messages are out before any ack, one
// at a time per key and in topic order, a nacked one comes back, and the batch's
// offset is committed once all are acked (a new subscriber of the group gets nothing).
func TestSubscriberConcurrency(t *testing.T) {
	for name, url := range map[string]string{
		"sqlite":   "sqlite://" + filepath.Join(t.TempDir(), "c.db"),
		"postgres": testdb.Postgres(t),
		"mysql":    testdb.MySQL(t),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, err := sqlstore.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			pub, err := db.NewPublisher(nil)
			if err != nil {
				t.Fatal(err)
			}
			const topic = "conc"
			if err := db.InitTopic(topic); err != nil {
				t.Fatal(err)
			}
			// 8 keyless messages, then a, b, a, b.
			var msgs []*message.Message
			for i := 0; i < 8; i++ {
				msgs = append(msgs, message.NewMessage(fmt.Sprintf("free-%d", i), []byte("x")))
			}
			for i, k := range []string{"a", "b", "a", "b"} {
				m := message.NewMessage(fmt.Sprintf("%s-%d", k, 8+i), []byte("x"))
				m.Metadata.Set("key", k)
				msgs = append(msgs, m)
			}
			if err := pub.Publish(topic, msgs...); err != nil {
				t.Fatal(err)
			}
			cfg := sqlstore.TransportConfig{Concurrency: 8, BatchSize: 100, Key: func(_ string, m *message.Message) string { return m.Metadata.Get("key") }}
			sub, err := db.NewSubscriber(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ch, err := sub.Subscribe(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			recv := func() *message.Message {
				select {
				case m := <-ch:
					return m
				case <-ctx.Done():
					t.Fatal("timed out waiting for a message")
				}
				return nil
			}
			// Eight are handed out without any ack.
			var first []*message.Message
			for i := 0; i < 8; i++ {
				first = append(first, recv())
			}
			select {
			case m := <-ch:
				t.Fatalf("a ninth message %s was handed out beyond the concurrency of 8", m.UUID)
			case <-time.After(200 * time.Millisecond):
			}
			nacked := first[0].UUID
			first[0].Nack() // comes back
			for _, m := range first[1:] {
				m.Ack()
			}
			// Now the nacked one again and the keyed ones: a-8 and b-9 first, never a-10
			// before a-8 is acked.
			got := map[string]*message.Message{}
			for len(got) < 3 {
				m := recv()
				got[m.UUID] = m
			}
			if got["a-8"] == nil || got["b-9"] == nil || got[nacked] == nil {
				t.Fatalf("handed out %v: want %s (resent), a-8 and b-9 only", keysOf(got), nacked)
			}
			got["a-8"].Ack()
			if m := recv(); m.UUID != "a-10" {
				t.Fatalf("after a-8 was acked got %s, want a-10", m.UUID)
			} else {
				m.Ack()
			}
			got["b-9"].Ack()
			if m := recv(); m.UUID != "b-11" {
				t.Fatalf("after b-9 was acked got %s, want b-11", m.UUID)
			} else {
				m.Ack()
			}
			got[nacked].Ack()
			// Wait until the ack is committed, then a fresh subscriber of the group sees nothing.
			deadline := time.Now().Add(10 * time.Second)
			for {
				lag, err := db.TopicLag(ctx, topic, "herald")
				if err != nil {
					t.Fatal(err)
				}
				if lag == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d messages still unacked", lag)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := sub.Close(); err != nil {
				t.Fatal(err)
			}
			sub2, err := db.NewSubscriber(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer sub2.Close()
			ch2, err := sub2.Subscribe(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-ch2:
				t.Fatalf("message %s delivered again after its batch was acked", m.UUID)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}

func keysOf(m map[string]*message.Message) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestMySQLSubscriptionReadsWithoutLocks: on MySQL a subscription holds its topic's
// lease (GET_LOCK), so it reads without a transaction or row locks, one statement per
// poll; it takes what another process (the core: no wake-up) commits, and acks in a
// group transaction.
func TestMySQLSubscriptionReadsWithoutLocks(t *testing.T) {
	db, url := openMySQL(t)
	queries, err := sqlstore.MySQLSubscriberQueries(db, url)
	if err != nil {
		t.Fatal(err)
	}
	const topic = "unlocked"
	ctx, ch := subscribeTo(t, db, topic, sqlstore.TransportConfig{PollInterval: 5 * time.Millisecond, IdlePollMax: time.Millisecond})
	const read = "WHERE `acked` = 0 ORDER BY `offset`"
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s (%d reads)", what, queries(read))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("ten idle polls", func() bool { return queries(read) >= 10 })

	// A row committed by another process, which wakes nobody here.
	core, err := sqlstore.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	pub, err := core.NewPublisher(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(topic, message.NewMessage("from-the-core", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		if m.UUID != "from-the-core" {
			t.Fatalf("got %s", m.UUID)
		}
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the row committed by another process was never read")
	}
	waitFor("the ack", func() bool {
		lag, err := db.TopicLag(ctx, topic, "herald")
		return err == nil && lag == 0
	})
	reads := queries(read)
	waitFor("idle polls after the batch", func() bool { return queries(read) >= reads+5 })
	for _, s := range []string{"FOR UPDATE", "START TRANSACTION", "SET TRANSACTION", "UPDATE `herald_unlocked`"} {
		if n := queries(s); n != 0 {
			t.Errorf("the subscription's connection sent %q %d times over %d reads: want none", s, n, queries(read))
		}
	}
}

// subscribeTo creates topic and subscribes to it with cfg for at most 30 s (the
// returned context's lifetime); the subscription ends with the test.
func subscribeTo(t *testing.T, db *sqlstore.DB, topic string, cfg sqlstore.TransportConfig) (context.Context, <-chan *message.Message) {
	t.Helper()
	if err := db.InitTopic(topic); err != nil {
		t.Fatal(err)
	}
	sub, err := db.NewSubscriber(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, ch
}
