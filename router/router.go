// Package router assembles Herald's Watermill router: which topic feeds which handler
// through which middleware. Reading New tells the whole pipeline.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/adapters/kafka"
	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/handlers"
	heraldmw "github.com/heraldhq/herald/middleware"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/templates"
)

// RetryConfig is the in-process retry of transient failures: exponential backoff with
// jitter (each wait is randomised by ±RandomizationFactor).
type RetryConfig struct {
	// MaxRetries after the first attempt. 0 means the default, 5; negative means none.
	MaxRetries int
	// InitialInterval before the first retry. Default 100ms.
	InitialInterval time.Duration
	// MaxInterval caps one wait. Default 5s.
	MaxInterval time.Duration
}

func (c *RetryConfig) setDefaults() {
	if c.MaxRetries == 0 {
		c.MaxRetries = 5
	}
	if c.InitialInterval == 0 {
		c.InitialInterval = 100 * time.Millisecond
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = 5 * time.Second
	}
}

// Config of the router.
type Config struct {
	DB        *sqlstore.DB
	Transport sqlstore.TransportConfig
	// Providers by channel; a channel without a provider is not delivered.
	Providers map[notify.Channel]handlers.Provider
	Renderer  *templates.Renderer
	Metrics   *metrics.Set
	Retry     RetryConfig
	// OTPTTL is the validity of one-time passwords (see handlers.FanOutConfig).
	OTPTTL time.Duration
	// Kafka, when it has brokers, carries events and deliveries between stages and
	// instances; a relay moves outbox rows to it. Otherwise SQL topics do.
	Kafka kafka.Config
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.DB == nil || c.Renderer == nil || c.Metrics == nil {
		return errors.New("router: db, renderer and metrics are required")
	}
	if len(c.Providers) == 0 {
		return errors.New("router: at least one provider is required")
	}
	return nil
}

// Router runs Herald's handlers.
type Router struct {
	*message.Router
	closers []interface{ Close() error }
}

// New assembles the router. SQL mode:
//
//	events (outbox) --fanout--> deliveries.<channel> --deliver.<channel>--> provider
//
// Kafka mode (cfg.Kafka has brokers):
//
//	events (outbox, SQL) --relay--> herald.events (Kafka, key account_id) --fanout-->
//	herald.deliveries.<channel> (Kafka) --deliver.<channel>--> provider
//
// Every handler runs behind: CorrelationID -> PoisonQueue (persisted with reason) ->
// Retry (transient errors only, backoff + jitter) -> Recoverer (a panic is an error) ->
// Metrics -> handler.
func New(cfg Config, logger *slog.Logger) (*Router, error) {
	cfg.Retry.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return nil, err
	}
	sqlSub, err := cfg.DB.NewSubscriber(cfg.Transport, wlog)
	if err != nil {
		return nil, err
	}
	closers := []interface{ Close() error }{sqlSub}
	var sub message.Subscriber = sqlSub
	var fanStore handlers.FanOutStore = cfg.DB
	topic := func(name string) string { return name }
	if len(cfg.Kafka.Brokers) > 0 {
		kcfg := cfg.Kafka.WithDefaults()
		kpub, err := kafka.NewPublisher(kcfg, wlog)
		if err != nil {
			return nil, err
		}
		ksub, err := kafka.NewSubscriber(kcfg, wlog)
		if err != nil {
			return nil, err
		}
		closers = append(closers, ksub, kpub)
		sub, topic = ksub, kcfg.Topic
		fanStore = kafkaFanOut{db: cfg.DB, pub: kpub, topic: kcfg.Topic}
		// The relay: outbox rows to Kafka, keyed by account. The SQL offset is acked only
		// after Kafka has the message, so a restart never loses a row (it may resend one,
		// which the delivery store absorbs).
		r.AddHandler("relay", sqlstore.EventsTopic, sqlSub, kcfg.Topic(sqlstore.EventsTopic), kpub,
			func(msg *message.Message) ([]*message.Message, error) { return []*message.Message{msg}, nil })
	}
	deliveries := cfg.DB.Deliveries()

	poison, err := wmw.PoisonQueue(&handlers.PoisonRecorder{
		Store: cfg.DB.Poison(), Deliveries: deliveries, Metrics: cfg.Metrics, Log: logger,
	}, "poison")
	if err != nil {
		return nil, err
	}
	retry := wmw.Retry{
		MaxRetries:          max(cfg.Retry.MaxRetries, 0),
		InitialInterval:     cfg.Retry.InitialInterval,
		MaxInterval:         cfg.Retry.MaxInterval,
		Multiplier:          2,
		RandomizationFactor: 0.5,
		ShouldRetry:         func(p wmw.RetryParams) bool { return handlers.ShouldRetry(p.Err) },
		Logger:              wlog,
	}
	r.AddMiddleware(
		wmw.CorrelationID,
		poison,
		retry.Middleware,
		wmw.Recoverer,
		heraldmw.Metrics{Set: cfg.Metrics}.Middleware,
	)

	channels := make([]notify.Channel, 0, len(cfg.Providers))
	for ch := range cfg.Providers {
		channels = append(channels, ch)
	}
	sort.Slice(channels, func(i, j int) bool { return channels[i] < channels[j] })

	fan, err := handlers.NewFanOut(handlers.FanOutConfig{
		Directory: cfg.DB.Recipients(), Store: fanStore, Renderer: cfg.Renderer,
		Channels: channels, Metrics: cfg.Metrics, OTPTTL: cfg.OTPTTL,
	}, logger)
	if err != nil {
		return nil, err
	}
	r.AddConsumerHandler("fanout", topic(sqlstore.EventsTopic), sub, fan.Handle)

	for _, ch := range channels {
		d, err := handlers.NewDeliver(handlers.DeliverConfig{
			Channel: ch, Provider: cfg.Providers[ch], Store: deliveries, Metrics: cfg.Metrics,
		}, logger)
		if err != nil {
			return nil, err
		}
		r.AddConsumerHandler("deliver."+string(ch), topic(sqlstore.DeliveryTopic(string(ch))), sub, d.Handle)
	}

	group := cfg.Transport.ConsumerGroup
	if group == "" {
		group = "herald"
	}
	cfg.Metrics.NewGauge("herald_outbox_lag_seconds", func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		lag, err := cfg.DB.OutboxLag(ctx, group)
		if err != nil {
			return -1
		}
		return lag.Seconds()
	})
	return &Router{Router: r, closers: closers}, nil
}

// kafkaFanOut records a fan-out in SQL, then publishes its messages to Kafka. Not one
// transaction: a crash in between redelivers the event, whose fan-out then changes
// nothing recorded and publishes again (the delivery handlers absorb the repeat).
type kafkaFanOut struct {
	db    *sqlstore.DB
	pub   message.Publisher
	topic func(string) string
}

func (k kafkaFanOut) CommitFanOut(ctx context.Context, n sqlstore.Notification, ds []notify.Delivery, msgs map[string][]*message.Message) error {
	if err := k.db.CommitFanOut(ctx, n, ds, nil); err != nil {
		return err
	}
	for t, ms := range msgs {
		if err := k.pub.Publish(k.topic(t), ms...); err != nil {
			return fmt.Errorf("publishing to %s: %w", k.topic(t), err)
		}
	}
	return nil
}

// Close stops the handlers, the subscribers and the publishers.
func (r *Router) Close() error {
	err := r.Router.Close()
	for _, c := range r.closers {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing transport: %w", cerr))
		}
	}
	return err
}
