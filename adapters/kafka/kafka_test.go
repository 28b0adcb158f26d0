package kafka_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/adapters/kafka"
)

// TestKafkaPubSub runs Watermill's universal suite (short mode) against Herald's Kafka
// configuration on an in-process cluster speaking the Kafka protocol (kfake).
func TestKafkaPubSub(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		cfg := kafka.Config{Brokers: c.ListenAddrs(), ConsumerGroup: group}
		pub, err := kafka.NewPublisher(cfg, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := kafka.NewSubscriber(cfg, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	// One consumer group per test: the suite's tests run in parallel, and sharing one
	// group made every test's subscriptions rebalance every other test's (a test then
	// saw nothing for 15 s now and then under the race detector).
	tests.TestPubSub(t, tests.Features{ConsumerGroups: true, Persistent: true, ForceShort: true},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, "test-"+t.Name()) },
		constructor)
}
