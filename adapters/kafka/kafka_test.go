package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
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
// consumer group per test. TestTopic (one subscriber, two topics) used to lose a topic
// now and then when both topics shared one consumer group; each topic now has its own.
func TestKafkaPubSub(t *testing.T) {
	c := cluster(t)
	constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) { return pubSub(t, c, group) }
	single := func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, "test-"+t.Name()) }
	suite.Run(t, tests.Features{ConsumerGroups: true, Persistent: true, ForceShort: true}, single, constructor, nil)
}

// TestEachTopicHasItsOwnConsumerGroup subscribes one subscriber to two topics, as
// Herald's router does, and checks that both deliver and that the cluster sees one
// consumer group per topic, named after it.
func TestEachTopicHasItsOwnConsumerGroup(t *testing.T) {
	c := cluster(t)
	pub, sub := pubSub(t, c, "own")
	defer func() { _ = pub.Close(); _ = sub.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := kafka.Config{TopicPrefix: "herald."}
	topics := []string{cfg.Topic("events"), cfg.Topic("deliveries.sms")}
	for _, topic := range topics {
		if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte(topic))); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range topics {
		ch, err := sub.Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-ch:
			if string(m.Payload) != topic {
				t.Fatalf("%s: got %q", topic, m.Payload)
			}
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("%s: nothing delivered", topic)
		}
	}
	admin, err := sarama.NewClusterAdmin(c.ListenAddrs(), sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	groups, err := admin.ListConsumerGroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"own.events", "own.deliveries.sms"} {
		if _, ok := groups[want]; !ok {
			t.Errorf("consumer group %q not found; groups: %v", want, groups)
		}
	}
	if _, ok := groups["own"]; ok {
		t.Errorf("the shared group %q still exists", "own")
	}
}
