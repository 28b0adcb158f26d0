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

	"github.com/heraldhq/herald/internal/handout"
)

// SubscriberConfig tunes how a subscriber hands a partition's messages out.
type SubscriberConfig struct {
	// Concurrency is how many messages of one partition are handed out at once, one
	// at a time per Key. Default 1: one at a time, the next after the previous ack.
	Concurrency int
	// Key names a message's ordering key; messages with the same key are handed out one
	// at a time, in partition order. Nil or "": no constraint beyond Concurrency.
	Key func(topic string, m *message.Message) string
	// AckDeadline: a message not acked in this time is handed out again. Default 60s.
	AckDeadline time.Duration
	// ResendInterval is the wait before a nacked message is handed out again.
	// Default 10ms.
	ResendInterval time.Duration
}

// NewSubscriber returns a subscriber that consumes each topic in a consumer group of
// its own (see GroupOf) and starts from the oldest message when the group has no
// offset yet. Of each partition it claims, up to sc.Concurrency messages are handed
// out at once, one at a time per sc.Key, and the partition's offset moves past a
// message only when it and every earlier one are acked: a crash or rebalance hands
// out again what was not acked (at least once), never skips.
//
// Why not watermill-kafka's subscriber: it hands a partition's messages out one at a
// time, so a partition moved at the speed of its slowest handler call (a provider's
// round trip), and it opens one consumer-group session per Subscribe, so sessions of
// one group subscribed to different topics rebalanced each other (a topic was seen
// left unconsumed for over 90 s). Its marshaler and topic creation are reused.
func NewSubscriber(cfg Config, sc SubscriberConfig, logger watermill.LoggerAdapter) (message.Subscriber, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sc.Concurrency <= 0 {
		sc.Concurrency = 1
	}
	if sc.AckDeadline <= 0 {
		sc.AckDeadline = 60 * time.Second
	}
	if sc.ResendInterval <= 0 {
		sc.ResendInterval = 10 * time.Millisecond
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	init, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers: cfg.Brokers, Unmarshaler: unmarshaler, OverwriteSaramaConfig: saramaConsumerConfig(),
		ConsumerGroup: cfg.ConsumerGroup,
		InitializeTopicDetails: &sarama.TopicDetail{
			NumPartitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor,
		},
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("kafka subscriber: %w", err)
	}
	return &Subscriber{cfg: cfg, sc: sc, logger: logger, init: init, closing: make(chan struct{})}, nil
}

var unmarshaler = wkafka.NewWithPartitioningMarshaler(PartitionKey)

func saramaConsumerConfig() *sarama.Config {
	c := wkafka.DefaultSaramaSubscriberConfig()
	c.ClientID = "herald"
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Version = sarama.V3_6_0_0
	return c
}

// GroupOf is the consumer group that consumes the Kafka topic:
// ConsumerGroup + "." + the topic without TopicPrefix (for example
// "herald.deliveries.sms"). One topic per group keeps every rebalance to the instances
// consuming that topic.
func (c Config) GroupOf(topic string) string {
	return c.ConsumerGroup + "." + strings.TrimPrefix(topic, c.TopicPrefix)
}

// Subscriber consumes Kafka topics; see NewSubscriber.
type Subscriber struct {
	cfg    Config
	sc     SubscriberConfig
	logger watermill.LoggerAdapter
	// init creates topics (watermill-kafka's SubscribeInitialize).
	init *wkafka.Subscriber

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// SubscribeInitialize creates the topic (Config.Partitions, Config.ReplicationFactor)
// unless it exists, and waits until its partitions have leaders.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if err := s.init.SubscribeInitialize(topic); err != nil {
		return fmt.Errorf("creating Kafka topic %s: %w", topic, err)
	}
	return nil
}

// Subscribe creates topic if needed and consumes it in its consumer group until ctx
// is done or the subscriber closes; then the channel is closed.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("kafka subscriber: closed")
	}
	if err := s.SubscribeInitialize(topic); err != nil {
		return nil, err
	}
	group, err := sarama.NewConsumerGroup(s.cfg.Brokers, s.cfg.GroupOf(topic), saramaConsumerConfig())
	if err != nil {
		return nil, fmt.Errorf("kafka consumer group for %s: %w", topic, err)
	}
	out := make(chan *message.Message)
	ctx, cancel := context.WithCancel(ctx)
	fields := watermill.LogFields{"topic": topic, "consumer_group": s.cfg.GroupOf(topic)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		go func() {
			select {
			case <-s.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		go func() {
			for err := range group.Errors() {
				s.logger.Error("Kafka consumer group error", err, fields)
			}
		}()
		h := &claims{s: s, topic: topic, out: out}
		for ctx.Err() == nil {
			// Consume returns at every rebalance; it is called again to rejoin.
			if err := group.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
				s.logger.Error("Kafka consume failed, rejoining", err, fields)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
		if err := group.Close(); err != nil {
			s.logger.Error("Closing Kafka consumer group", err, fields)
		}
	}()
	return out, nil
}

// Close stops every subscription and returns when their channels are closed.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	s.wg.Wait()
	return s.init.Close()
}

// claims handles the partitions a consumer-group session claims.
type claims struct {
	s     *Subscriber
	topic string
	out   chan<- *message.Message
}

func (*claims) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*claims) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim takes the messages the partition has ready (at least one, at most
// Concurrency), hands them out, marks the acked prefix consumed and goes on; messages
// after one not acked (ack deadline) are handed out again first. It returns when the
// session ends (rebalance, shutdown): the session commits the marked offsets.
func (h *claims) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	cfg := handout.Config{Concurrency: h.s.sc.Concurrency, AckDeadline: h.s.sc.AckDeadline,
		ResendInterval: h.s.sc.ResendInterval, Closing: h.s.closing}
	var batch []*sarama.ConsumerMessage
	for {
		if len(batch) == 0 {
			select {
			case m, ok := <-claim.Messages():
				if !ok {
					return nil
				}
				batch = append(batch, m)
			case <-ctx.Done():
				return nil
			case <-h.s.closing:
				return nil
			}
		}
	fill:
		for len(batch) < h.s.sc.Concurrency {
			select {
			case m, ok := <-claim.Messages():
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		msgs, keys := make([]*message.Message, len(batch)), make([]string, len(batch))
		for i, km := range batch {
			m, err := unmarshaler.Unmarshal(km)
			if err != nil { // the marshaler in use never fails; hand the raw value out
				m = message.NewMessage(watermill.NewUUID(), km.Value)
			}
			msgs[i] = m
			if h.s.sc.Key != nil {
				keys[i] = h.s.sc.Key(h.topic, m)
			}
		}
		n := handout.Dispatch(ctx, cfg, msgs, keys, h.out)
		if n > 0 {
			sess.MarkMessage(batch[n-1], "")
		}
		batch = batch[n:]
		if len(batch) > 0 && (ctx.Err() != nil || isClosed(h.s.closing)) {
			return nil
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
