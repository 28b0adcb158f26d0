// Package kafka carries Herald's topics over Kafka (watermill-kafka with Sarama):
// events keyed by account id, so one account's events stay in order, and the channel
// topics between Herald instances.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Config of the Kafka transport.
type Config struct {
	Brokers []string
	// ConsumerGroup is the prefix of Herald's consumer groups, one per topic
	// (ConsumerGroup + "." + topic without TopicPrefix). Default "herald".
	ConsumerGroup string
	// TopicPrefix is put before Herald's topic names. Default "herald.".
	TopicPrefix string
	// Partitions of topics Herald creates. Default 4.
	Partitions int32
	// ReplicationFactor of topics Herald creates. Default 1; use 3 in production.
	ReplicationFactor int16
}

func (c *Config) setDefaults() {
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = "herald"
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "herald."
	}
	if c.Partitions == 0 {
		c.Partitions = 4
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = 1
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: at least one broker is required")
	}
	for _, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("kafka: broker %q must be host:port", b)
		}
	}
	if c.Partitions < 1 || c.ReplicationFactor < 1 {
		return errors.New("kafka: partitions and replication factor must be positive")
	}
	return nil
}

// WithDefaults returns the config with its defaults filled in.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

// Topic is the Kafka topic of a Herald topic.
func (c Config) Topic(name string) string { return c.TopicPrefix + name }

// PartitionKey picks the Kafka key of a message: the account id (per-account order),
// else the recipient id, else the message UUID.
func PartitionKey(_ string, m *message.Message) (string, error) {
	for _, k := range []string{"account_id", "recipient_id"} {
		if v := m.Metadata.Get(k); v != "" {
			return v, nil
		}
	}
	return m.UUID, nil
}

// NewPublisher returns a synchronous, idempotent publisher: Publish returns once every
// in-sync replica has the message.
func NewPublisher(cfg Config, logger watermill.LoggerAdapter) (message.Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sc := wkafka.DefaultSaramaSyncPublisherConfig()
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 200 * time.Millisecond
	sc.Version = sarama.V3_6_0_0
	p, err := wkafka.NewPublisher(wkafka.PublisherConfig{
		Brokers:               cfg.Brokers,
		Marshaler:             wkafka.NewWithPartitioningMarshaler(PartitionKey),
		OverwriteSaramaConfig: sc,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("kafka publisher: %w", err)
	}
	return p, nil
}

// NewSubscriber returns a subscriber that starts from the oldest message when a group
// has no offset yet. Each topic is consumed in a consumer group of its own,
// ConsumerGroup + "." + the topic without TopicPrefix (for example
// "herald.deliveries.sms"): watermill-kafka opens one consumer-group session per
// Subscribe, and sessions of one group that subscribe to different topics rebalance
// each other — one could be left with no partitions of its topic for a long time. One
// topic per group keeps every rebalance to the instances consuming that topic.
func NewSubscriber(cfg Config, logger watermill.LoggerAdapter) (message.Subscriber, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &subscriber{cfg: cfg, logger: logger, groups: map[string]*wkafka.Subscriber{}}, nil
}

// GroupOf is the consumer group that consumes the Kafka topic.
func (c Config) GroupOf(topic string) string {
	return c.ConsumerGroup + "." + strings.TrimPrefix(topic, c.TopicPrefix)
}

// subscriber keeps one watermill-kafka subscriber (one consumer group) per topic.
type subscriber struct {
	cfg    Config
	logger watermill.LoggerAdapter

	mu     sync.Mutex
	closed bool
	groups map[string]*wkafka.Subscriber
}

func (s *subscriber) of(topic string) (*wkafka.Subscriber, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("kafka subscriber: closed")
	}
	if ks, ok := s.groups[topic]; ok {
		return ks, nil
	}
	sc := wkafka.DefaultSaramaSubscriberConfig()
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Version = sarama.V3_6_0_0
	ks, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers:               s.cfg.Brokers,
		Unmarshaler:           wkafka.NewWithPartitioningMarshaler(PartitionKey),
		OverwriteSaramaConfig: sc,
		ConsumerGroup:         s.cfg.GroupOf(topic),
		InitializeTopicDetails: &sarama.TopicDetail{
			NumPartitions: s.cfg.Partitions, ReplicationFactor: s.cfg.ReplicationFactor,
		},
	}, s.logger)
	if err != nil {
		return nil, fmt.Errorf("kafka subscriber for %s: %w", topic, err)
	}
	s.groups[topic] = ks
	return ks, nil
}

// Subscribe consumes topic in its own consumer group.
func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ks, err := s.of(topic)
	if err != nil {
		return nil, err
	}
	return ks.Subscribe(ctx, topic)
}

// SubscribeInitialize creates the topic if it does not exist.
func (s *subscriber) SubscribeInitialize(topic string) error {
	ks, err := s.of(topic)
	if err != nil {
		return err
	}
	return ks.SubscribeInitialize(topic)
}

// Close closes every topic's subscriber.
func (s *subscriber) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, ks := range s.groups {
		errs = append(errs, ks.Close())
	}
	return errors.Join(errs...)
}
