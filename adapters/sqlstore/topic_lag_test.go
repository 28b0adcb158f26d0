package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

// TestTopicLagIsTheOldestUnconsumedRow: the lag of a topic (herald_outbox_lag_seconds
// for the outbox) is the age of the first row the consumer group has not consumed, not
// of a later one, on each database.
func TestTopicLagIsTheOldestUnconsumedRow(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		const topic = "deliveries.lagtest"
		sub, err := db.NewSubscriber(sqlstore.TransportConfig{ConsumerGroup: "herald"}, suiteLogger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Close() })
		if err := sub.SubscribeInitialize(topic); err != nil {
			t.Fatal(err)
		}
		if lag, err := db.TopicLag(ctx, topic, "herald"); err != nil || lag != 0 {
			t.Fatalf("an empty topic's lag: %s, %v; want 0", lag, err)
		}
		pub, err := db.NewPublisher(nil)
		if err != nil {
			t.Fatal(err)
		}
		const gap = 300 * time.Millisecond
		before := time.Now()
		if err := pub.Publish(topic, message.NewMessage("first", []byte("1"))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap)
		if err := pub.Publish(topic, message.NewMessage("second", []byte("2"))); err != nil {
			t.Fatal(err)
		}
		lag, err := db.TopicLag(ctx, topic, "herald")
		if err != nil {
			t.Fatal(err)
		}
		if lag < gap-10*time.Millisecond || lag > time.Since(before)+time.Second {
			t.Fatalf("lag %s: want the first row's age, at least %s and at most %s", lag, gap, time.Since(before))
		}
	})
}
