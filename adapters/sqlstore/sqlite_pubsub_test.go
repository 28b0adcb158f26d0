package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

// TestSQLitePubSub runs Watermill's universal Pub/Sub suite against the SQLite topics.
// Features are what the adapter truly has: persistent, ordered, consumer groups; it
// is at least once (not exactly once) by design, see SQLiteBeginner.
func TestSQLitePubSub(t *testing.T) {
	db, err := sqlstore.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "pubsub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })

	constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := db.NewPublisher(nil)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := db.NewSubscriber(sqlstore.TransportConfig{ConsumerGroup: group}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:      true,
			ExactlyOnceDelivery: false,
			GuaranteedOrder:     true,
			Persistent:          true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, "test") },
		constructor,
	)
}
