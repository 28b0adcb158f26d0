// Package kafka carries Herald's topics over Kafka (watermill-kafka with Sarama):
// events keyed by account id, so one account's events stay in order, and the channel
// topics between Herald instances.
package kafka

import (
	"errors"
	"fmt"
	"strings"
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
