package sqlstore

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// TransportConfig configures SQL topics.
type TransportConfig struct {
	// ConsumerGroup of subscribers. Default "herald".
	ConsumerGroup string
	// PollInterval is how long an idle subscriber waits before asking again. Default 10ms.
	PollInterval time.Duration
	// BatchSize is how many rows one subscriber query reads. Default 100.
	BatchSize int
	// AckDeadline: a message not acked in this time is redelivered. Default 60s.
	AckDeadline time.Duration
}

func (c *TransportConfig) setDefaults() {
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = "herald"
	}
	if c.PollInterval == 0 {
		c.PollInterval = 10 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.AckDeadline == 0 {
		c.AckDeadline = 60 * time.Second
	}
}

// SchemaAdapter returns the watermill-sql schema adapter of the database.
func (db *DB) SchemaAdapter(batch int) wsql.SchemaAdapter {
	return SQLiteSchema{SubscribeBatchSize: batch}
}

// OffsetsAdapter returns the watermill-sql offsets adapter of the database.
func (db *DB) OffsetsAdapter() wsql.OffsetsAdapter { return SQLiteOffsets{} }

// NewPublisher returns a publisher that writes topics in their own statements.
func (db *DB) NewPublisher(logger watermill.LoggerAdapter) (message.Publisher, error) {
	return wsql.NewPublisher(SQLiteBeginner{R: db.R, W: db.W}, wsql.PublisherConfig{
		SchemaAdapter: db.SchemaAdapter(0),
	}, logger)
}

// NewTxPublisher returns a publisher that writes inside an ongoing transaction.
func (db *DB) NewTxPublisher(tx wsql.ContextExecutor, logger watermill.LoggerAdapter) (message.Publisher, error) {
	return wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: db.SchemaAdapter(0)}, logger)
}

// NewSubscriber returns a subscriber of SQL topics.
func (db *DB) NewSubscriber(cfg TransportConfig, logger watermill.LoggerAdapter) (*wsql.Subscriber, error) {
	cfg.setDefaults()
	s, err := wsql.NewSubscriber(SQLiteBeginner{R: db.R, W: db.W}, wsql.SubscriberConfig{
		ConsumerGroup:    cfg.ConsumerGroup,
		PollInterval:     cfg.PollInterval,
		ResendInterval:   10 * time.Millisecond,
		RetryInterval:    time.Second,
		AckDeadline:      &cfg.AckDeadline,
		SchemaAdapter:    db.SchemaAdapter(cfg.BatchSize),
		OffsetsAdapter:   db.OffsetsAdapter(),
		InitializeSchema: true,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("creating SQL subscriber: %w", err)
	}
	return s, nil
}

// InitTopic creates the tables of a topic.
func (db *DB) InitTopic(topic string) error {
	s, err := db.NewSubscriber(TransportConfig{}, nil)
	if err != nil {
		return err
	}
	defer s.Close() //nolint:errcheck // nothing was subscribed
	return s.SubscribeInitialize(topic)
}
