package kafka_test

import (
	"context"
	"fmt"
	"sync"
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

func pubSub(t *testing.T, c *kfake.Cluster, group string, sc kafka.SubscriberConfig) (message.Publisher, message.Subscriber) {
	t.Helper()
	cfg := kafka.Config{Brokers: c.ListenAddrs(), ConsumerGroup: group}
	pub, err := kafka.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := kafka.NewSubscriber(cfg, sc, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	return pub, sub
}

// TestKafkaPubSub runs Watermill's universal suite (short mode) against Herald's Kafka
// subscriber on an in-process cluster speaking the Kafka protocol (kfake), one consumer
// group per test: handing out one message at a time per partition, and 16 at a time.
func TestKafkaPubSub(t *testing.T) {
	for _, concurrency := range []int{1, 16} {
		t.Run(fmt.Sprintf("concurrency=%d", concurrency), func(t *testing.T) {
			c := cluster(t)
			constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
				return pubSub(t, c, group, kafka.SubscriberConfig{Concurrency: concurrency})
			}
			single := func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, "test-"+t.Name()) }
			suite.Run(t, tests.Features{ConsumerGroups: true, Persistent: true, ForceShort: true}, single, constructor, nil)
		})
	}
}

// TestPartitionHandedOutConcurrentlyInKeyOrder: one partition's messages are handed out
// side by side, yet each key's messages one at a time and in the order published.
func TestPartitionHandedOutConcurrentlyInKeyOrder(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	key := func(_ string, m *message.Message) string { return m.Metadata.Get("account_id") }
	// One partition, created by the subscriber (the cluster does not create topics).
	cfg := kafka.Config{Brokers: c.ListenAddrs(), ConsumerGroup: "order", Partitions: 1}
	pub, err := kafka.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := kafka.NewSubscriber(cfg, kafka.SubscriberConfig{Concurrency: 32, Key: key}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pub.Close(); _ = sub.Close() }()
	if err := sub.(message.SubscribeInitializer).SubscribeInitialize("ordered"); err != nil {
		t.Fatal(err)
	}
	const accounts, each = 8, 25
	var msgs []*message.Message
	for i := 0; i < each; i++ {
		for a := 0; a < accounts; a++ {
			m := message.NewMessage(fmt.Sprintf("a%d-%03d", a, i), nil)
			m.Metadata.Set("account_id", fmt.Sprintf("a%d", a))
			msgs = append(msgs, m)
		}
	}
	if err := pub.Publish("ordered", msgs...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, "ordered")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	inflight, most := 0, 0
	busy := map[string]bool{}
	got := map[string][]string{}
	var wg sync.WaitGroup
	for n := 0; n < len(msgs); n++ {
		var m *message.Message
		select {
		case m = <-ch:
		case <-ctx.Done():
			t.Fatalf("%d of %d messages arrived", n, len(msgs))
		}
		a := m.Metadata.Get("account_id")
		mu.Lock()
		if busy[a] {
			t.Errorf("%s handed out while an earlier message of %s was out", m.UUID, a)
		}
		busy[a] = true
		got[a] = append(got[a], m.UUID)
		inflight++
		most = max(most, inflight)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(20 * time.Millisecond) // a provider call
			mu.Lock()
			busy[a] = false
			inflight--
			mu.Unlock()
			m.Ack()
		}()
	}
	wg.Wait()
	for a := 0; a < accounts; a++ {
		id := fmt.Sprintf("a%d", a)
		for i, u := range got[id] {
			if want := fmt.Sprintf("%s-%03d", id, i); u != want {
				t.Fatalf("%s: message %d is %s, want %s", id, i, u, want)
			}
		}
	}
	if most < accounts/2 {
		t.Errorf("at most %d messages were out at once; want the %d accounts side by side", most, accounts)
	}
}

// TestEachTopicHasItsOwnConsumerGroup subscribes one subscriber to two topics, as
// Herald's router does, and checks that both deliver and that the cluster sees one
// consumer group per topic, named after it.
func TestEachTopicHasItsOwnConsumerGroup(t *testing.T) {
	c := cluster(t)
	pub, sub := pubSub(t, c, "own", kafka.SubscriberConfig{})
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
