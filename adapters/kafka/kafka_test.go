package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/adapters/kafka"
	"github.com/heraldhq/herald/internal/suite"
)

func cluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func pubSub(t *testing.T, c *kfake.Cluster, group string) (message.Publisher, message.Subscriber) {
	t.Helper()
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

// TestKafkaPubSub runs Watermill's universal suite (short mode) against Herald's Kafka
// configuration on an in-process cluster speaking the Kafka protocol (kfake), one
// consumer group per test, without TestTopic: it subscribes one subscriber to two
// topics of one consumer group, which makes the group rebalance, and allows 15 s for
// it; under the race detector that was sometimes not enough. TestTwoTopicsOneSubscriber
// checks the same with room for the rebalance.
func TestKafkaPubSub(t *testing.T) {
	c := cluster(t)
	constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) { return pubSub(t, c, group) }
	single := func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, "test-"+t.Name()) }
	suite.Run(t, tests.Features{ConsumerGroups: true, Persistent: true, ForceShort: true}, single, constructor,
		map[string]bool{"TestTopic": true})
}

// TestTwoTopicsOneSubscriber: one subscriber of one consumer group gets the messages of
// two topics (what Herald's router does with the channel topics), once the group has
// rebalanced.
func TestTwoTopicsOneSubscriber(t *testing.T) {
	c := cluster(t)
	pub, sub := pubSub(t, c, "two-topics")
	defer sub.Close()
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var want []string
	for _, topic := range []string{"two-a", "two-b"} {
		m := message.NewMessage(watermill.NewUUID(), []byte("x"))
		want = append(want, m.UUID)
		if err := pub.Publish(topic, m); err != nil {
			t.Fatal(err)
		}
	}
	chA, err := sub.Subscribe(ctx, "two-a")
	if err != nil {
		t.Fatal(err)
	}
	chB, err := sub.Subscribe(ctx, "two-b")
	if err != nil {
		t.Fatal(err)
	}
	for i, ch := range []<-chan *message.Message{chA, chB} {
		select {
		case m := <-ch:
			if m.UUID != want[i] {
				t.Fatalf("topic %d: got %s, want %s", i, m.UUID, want[i])
			}
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("topic %d: no message in 90 s", i)
		}
	}
}
