// Package router assembles Herald's Watermill router: which topic feeds which handler
// through which middleware. Reading New tells the whole pipeline.
package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/VictoriaMetrics/metrics"
	"github.com/google/uuid"

	"github.com/heraldhq/herald/adapters/inbox"
	"github.com/heraldhq/herald/adapters/kafka"
	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/handlers"
	"github.com/heraldhq/herald/internal/wlog"
	heraldmw "github.com/heraldhq/herald/middleware"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/templates"
)

// RetryConfig is the quick in-process retry of transient failures: exponential
// backoff with jitter (each wait uniformly random between 0 and twice its step). It
// holds the subscription while it waits, so it is kept short; longer waits belong to
// the persistent requeue.
type RetryConfig struct {
	// MaxRetries after the first attempt. 0 means the default, 2; negative means none.
	MaxRetries int
	// InitialInterval before the first retry. Default 50ms.
	InitialInterval time.Duration
	// MaxInterval caps one wait. Default 1s.
	MaxInterval time.Duration
}

func (c *RetryConfig) setDefaults() {
	if c.MaxRetries == 0 {
		c.MaxRetries = 2
	}
	if c.InitialInterval == 0 {
		c.InitialInterval = 50 * time.Millisecond
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = time.Second
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
	// Delivery is what guards each provider.
	Delivery DeliveryConfig
	// RetainConsumed: a SQL topic row (the outbox included) that every consumer group
	// has consumed is deleted once it is older than this, checked every PruneEvery.
	// 0 keeps every row.
	RetainConsumed time.Duration
	// RetainRecords: the records of a notification whose deliveries have all ended
	// (notification, deliveries, sandbox sends) and idempotency keys are deleted once
	// older than this (sqlstore.DB.PruneRecords). 0 keeps them.
	RetainRecords time.Duration
	// PruneEvery is how often consumed rows and records are pruned. Default the shorter
	// retention, within 1s..1m.
	PruneEvery time.Duration
}

// DeliveryConfig configures the delivery handlers' reliability.
type DeliveryConfig struct {
	// Store leases and records deliveries. Default: the SQL delivery store.
	Store handlers.DeliveryStore
	// SendTimeout bounds one provider call; Lease outlasts it (handlers.DeliverConfig).
	SendTimeout, Lease time.Duration
	// Budget and Budgets (per event type) bound retries of one delivery.
	Budget  handlers.RetryBudget
	Budgets map[string]handlers.RetryBudget
	// Breaker configures every provider's circuit breaker.
	Breaker handlers.BreakerConfig
	// RateLimiters pace providers, by channel; absent means unlimited.
	RateLimiters map[notify.Channel]handlers.RateLimiter
	// Cap limits messages per recipient address and window (critical lane exempt).
	Cap handlers.RecipientCap
	// RequeueInitial and RequeueMax bound the persistent requeue's backoff
	// (full jitter, doubling). Defaults 1s and 5m.
	RequeueInitial, RequeueMax time.Duration
	// RequeuePoll is how often parked messages are checked. Default 200ms.
	RequeuePoll time.Duration
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
	db      *sqlstore.DB
	// requeuePub publishes parked messages back (Kafka mode); nil for SQL topics.
	requeuePub  message.Publisher
	requeuePoll time.Duration
	log         *slog.Logger
	requeued    *metrics.Counter
	// sqlTopics are the SQL topics the router consumes; their consumed rows older than
	// retain are pruned every pruneEvery.
	sqlTopics          []string
	retain, pruneEvery time.Duration
	retainRecords      time.Duration
	metrics            *metrics.Set
}

// New assembles the router. SQL mode:
//
//	events[.critical] (outbox) --fanout--> deliveries.<channel>[.critical] --deliver.<channel>--> provider
//
// Kafka mode (cfg.Kafka has brokers):
//
//	events[.critical] (outbox, SQL) --relay--> herald.events[.critical] (Kafka, key account_id) --fanout-->
//	herald.deliveries.<channel>[.critical] (Kafka) --deliver.<channel>--> provider
//
// The critical lane (one-time passwords, security, fraud) has its own topics and
// handlers at every stage, so a backlog of normal traffic never delays it.
//
// Every handler runs behind CorrelationID -> PoisonQueue (poison and permanent
// failures, persisted with the reason). Delivery handlers then have the persistent
// Requeue (transient failures that survive the quick retries, and deferrals, wait in
// herald_delayed); then, for all: Retry (transient errors only, backoff + jitter) ->
// Recoverer (a panic is an error) -> Metrics -> handler. A fan-out or relay error that
// survives its retries is nacked and redelivered, keeping the outbox order.
func New(cfg Config, logger *slog.Logger) (_ *Router, err error) {
	cfg.Retry.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wl := wlog.New(logger)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wl)
	if err != nil {
		return nil, err
	}
	tcfg := cfg.Transport
	if tcfg.Key == nil {
		tcfg.Key = OrderKey
	}
	sqlSub, err := cfg.DB.NewSubscriber(tcfg, wl)
	if err != nil {
		return nil, err
	}
	rt := &Router{Router: r, db: cfg.DB, closers: []interface{ Close() error }{sqlSub}, log: logger,
		requeuePoll: cfg.Delivery.RequeuePoll,
		requeued:    cfg.Metrics.GetOrCreateCounter(`herald_requeue_moved_total`),
		retain:      cfg.RetainConsumed, pruneEvery: cfg.PruneEvery, metrics: cfg.Metrics, retainRecords: cfg.RetainRecords}
	defer func() {
		if err != nil { // what New opened so far (subscribers, the Kafka client) is closed
			err = errors.Join(err, rt.closeTransports())
		}
	}()
	if rt.requeuePoll <= 0 {
		rt.requeuePoll = 200 * time.Millisecond
	}
	if rt.pruneEvery <= 0 {
		shortest := rt.retain
		if rt.retainRecords > 0 && (shortest <= 0 || rt.retainRecords < shortest) {
			shortest = rt.retainRecords
		}
		rt.pruneEvery = min(max(shortest, time.Second), time.Minute)
	}
	var sub message.Subscriber = sqlSub
	var fanStore handlers.FanOutStore = cfg.DB
	topic := func(name string) string { return name }
	outboxes := []string{sqlstore.EventsTopic, sqlstore.CriticalEventsTopic}
	if len(cfg.Kafka.Brokers) > 0 {
		kcfg := cfg.Kafka.WithDefaults()
		kpub, err := kafka.NewPublisher(kcfg, wl)
		if err != nil {
			return nil, err
		}
		rt.closers = append(rt.closers, kpub)
		ksub, err := kafka.NewSubscriber(kcfg, kafka.SubscriberConfig{
			Concurrency: tcfg.Concurrency,
			Key:         func(t string, m *message.Message) string { return OrderKey(strings.TrimPrefix(t, kcfg.TopicPrefix), m) },
		}, wl)
		if err != nil {
			return nil, err
		}
		rt.closers = []interface{ Close() error }{sqlSub, ksub, kpub} // subscribers first
		sub, topic, rt.requeuePub = ksub, kcfg.Topic, kpub
		fanStore = kafkaFanOut{db: cfg.DB, pub: kpub, topic: kcfg.Topic}
		// The relay: outbox rows to Kafka, keyed by account. The SQL offset is acked only
		// after Kafka has the message, so a restart never loses a row (it may resend one,
		// which the delivery store absorbs).
		rt.sqlTopics = outboxes
		for _, t := range outboxes {
			h := r.AddHandler("relay"+laneSuffix(t), t, sqlSub, kcfg.Topic(t), sharedPublisher{kpub},
				func(msg *message.Message) ([]*message.Message, error) {
					// The Kafka partition key: a plain INSERT may carry the account only in
					// the payload.
					if msg.Metadata.Get("account_id") == "" {
						if a := OrderKey(t, msg); a != "" {
							msg.Metadata.Set("account_id", a)
						}
					}
					return []*message.Message{msg}, nil
				})
			h.AddMiddleware(rt.common(cfg)...)
		}
	}
	deliveries := cfg.DB.Deliveries()
	store := cfg.Delivery.Store
	if store == nil {
		store = deliveries
	}

	poison, err := wmw.PoisonQueueWithFilter(&handlers.PoisonRecorder{
		Store: cfg.DB.Poison(), Deliveries: deliveries, Metrics: cfg.Metrics, Log: logger,
	}, "poison", func(err error) bool {
		c := notify.ClassOf(err)
		return c == notify.ClassPoison || c == notify.ClassPermanent
	})
	if err != nil {
		return nil, err
	}
	r.AddMiddleware(heraldmw.GrowStack, wmw.CorrelationID, poison)

	channels := make([]notify.Channel, 0, len(cfg.Providers))
	for ch := range cfg.Providers {
		channels = append(channels, ch)
	}
	sort.Slice(channels, func(i, j int) bool { return channels[i] < channels[j] })

	fan, err := handlers.NewFanOut(handlers.FanOutConfig{
		Directory: cfg.DB.Recipients(), Store: fanStore, Renderer: cfg.Renderer,
		Channels: channels, Metrics: cfg.Metrics, OTPTTL: cfg.OTPTTL, DirectInbox: directInbox(cfg),
	}, logger)
	if err != nil {
		return nil, err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		rt.sqlTopics = append(rt.sqlTopics, outboxes...)
	}
	var consumed []string // the topics sub consumes
	for _, t := range outboxes {
		consumed = append(consumed, topic(t))
		h := r.AddConsumerHandler("fanout"+laneSuffix(t), topic(t), sub, fan.Handle)
		h.AddMiddleware(rt.common(cfg)...)
	}

	requeue := heraldmw.Requeue{Store: cfg.DB.Delayed(), Initial: cfg.Delivery.RequeueInitial,
		Max: cfg.Delivery.RequeueMax, Metrics: cfg.Metrics, Log: logger}
	owner := uuid.NewString()
	for _, ch := range channels {
		// One breaker and one rate limit per provider, shared by its lanes.
		breaker := handlers.NewBreaker(string(ch), cfg.Delivery.Breaker, cfg.Metrics)
		d, err := handlers.NewDeliver(handlers.DeliverConfig{
			Channel: ch, Provider: cfg.Providers[ch], Store: store, Metrics: cfg.Metrics,
			SendTimeout: cfg.Delivery.SendTimeout, Lease: cfg.Delivery.Lease, Owner: owner,
			Budget: cfg.Delivery.Budget, Budgets: cfg.Delivery.Budgets, Breaker: breaker,
			RateLimiter: cfg.Delivery.RateLimiters[ch], Cap: cfg.Delivery.Cap, Fallback: fanStore,
		}, logger)
		if err != nil {
			return nil, err
		}
		for _, lane := range []notify.Lane{notify.LaneNormal, notify.LaneCritical} {
			t := sqlstore.DeliveryTopic(string(ch), lane)
			if len(cfg.Kafka.Brokers) == 0 {
				rt.sqlTopics = append(rt.sqlTopics, t)
			}
			consumed = append(consumed, topic(t))
			h := r.AddConsumerHandler("deliver."+string(ch)+laneSuffix(t), topic(t), sub, d.Handle)
			h.AddMiddleware(requeue.Middleware)
			h.AddMiddleware(rt.common(cfg)...)
		}
	}
	if init, ok := sub.(message.SubscribeInitializer); ok && len(cfg.Kafka.Brokers) > 0 {
		// Every Kafka topic exists before the first publish (a broker's auto-creation
		// is usually off, and would not use Herald's partitions).
		for _, t := range consumed {
			if err := init.SubscribeInitialize(t); err != nil {
				return nil, err
			}
		}
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
	cfg.Metrics.NewGauge("herald_requeue_parked", func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := cfg.DB.Delayed().Count(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	if _, ok := cfg.DB.Checkpoints(); ok {
		// SQLite: the write-ahead log's size and the checkpoints that failed; a log
		// that keeps growing means it is not being copied into the database file.
		cfg.Metrics.NewGauge("herald_sqlite_wal_pages", func() float64 {
			s, _ := cfg.DB.Checkpoints()
			return float64(s.LogFrames)
		})
		cfg.Metrics.NewGauge("herald_sqlite_checkpoint_failures_total", func() float64 {
			s, _ := cfg.DB.Checkpoints()
			return float64(s.Failures)
		})
	}
	return rt, nil
}

// OrderKey is what SQL topics keep in order while handling messages side by side: an
// event's account and a delivery's recipient. An outbox row's account is its metadata's
// account_id (the partition key of docs/outbox.md, set by the Go outbox), else the
// payload's (a plain INSERT may omit metadata; an undecodable payload has none and is
// poisoned by the fan-out).
func OrderKey(topic string, m *message.Message) string {
	if !sqlstore.IsOutboxTopic(topic) {
		return m.Metadata.Get("recipient_id")
	}
	if a := m.Metadata.Get("account_id"); a != "" {
		return a
	}
	var e struct {
		AccountID string `json:"account_id"`
	}
	if json.Unmarshal(m.Payload, &e) != nil {
		return ""
	}
	return e.AccountID
}

func laneSuffix(topic string) string {
	if strings.HasSuffix(topic, ".critical") {
		return ".critical"
	}
	return ""
}

// common is the inner middleware every handler has: the quick in-process retry of
// transient errors, the panic recoverer and the metrics.
func (rt *Router) common(cfg Config) []message.HandlerMiddleware {
	retry := wmw.Retry{
		MaxRetries:          max(cfg.Retry.MaxRetries, 0),
		InitialInterval:     cfg.Retry.InitialInterval,
		MaxInterval:         cfg.Retry.MaxInterval,
		Multiplier:          2,
		RandomizationFactor: 1,
		ShouldRetry:         func(p wmw.RetryParams) bool { return handlers.ShouldRetry(p.Err) },
		// Retries are counted in herald_deliveries_total{status="retrying"}; a log line
		// at error level for each would drown the real errors.
		Logger: nil,
	}
	return []message.HandlerMiddleware{retry.Middleware, wmw.Recoverer, heraldmw.Metrics{Set: cfg.Metrics}.Middleware}
}

// Run runs the handlers and the requeuer (parked messages back to their topics) until
// ctx is done or the router stops.
func (rt *Router) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-rt.Running():
		case <-ctx.Done():
			return
		}
		var wg sync.WaitGroup
		if rt.retain > 0 || rt.retainRecords > 0 {
			wg.Go(func() { rt.runPruner(ctx) })
		}
		rt.runRequeuer(ctx)
		wg.Wait()
	}()
	err := rt.Router.Run(ctx)
	cancel()
	<-done
	return err
}

func (rt *Router) runRequeuer(ctx context.Context) {
	t := time.NewTicker(rt.requeuePoll)
	defer t.Stop()
	pruned := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(pruned) > 10*time.Minute {
			// Recipient-cap windows are at most a day long (config); older ones are dead.
			if err := rt.db.RecipientWindows().Prune(ctx, time.Now().Add(-48*time.Hour)); err != nil && ctx.Err() == nil {
				rt.log.Warn("pruning recipient-cap windows", "error", err)
			}
			pruned = time.Now()
		}
		for ctx.Err() == nil {
			n, err := rt.db.Delayed().MoveDue(ctx, 500, rt.requeuePub)
			if err != nil {
				if ctx.Err() == nil {
					rt.log.Warn("requeue failed, will retry", "error", err)
				}
				break
			}
			rt.requeued.Add(n)
			if n < 500 {
				break
			}
		}
	}
}

// runPruner deletes the consumed rows of the router's SQL topics that are older than
// rt.retain and the ended records older than rt.retainRecords, every rt.pruneEvery (the
// first time at start-up).
func (rt *Router) runPruner(ctx context.Context) {
	t := time.NewTicker(rt.pruneEvery)
	defer t.Stop()
	for {
		if rt.retainRecords > 0 {
			rt.pruneRecords(ctx)
		}
		if rt.retain > 0 {
			rt.pruneConsumed(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneRecords deletes the ended records older than rt.retainRecords.
func (rt *Router) pruneRecords(ctx context.Context) {
	p, err := rt.db.PruneRecords(ctx, rt.retainRecords)
	if err != nil && ctx.Err() == nil {
		rt.log.Warn("pruning records failed, will retry", "error", err)
	}
	for table, n := range map[string]int64{"herald_notifications": p.Notifications, "herald_deliveries": p.Deliveries,
		"herald_sandbox_sends": p.SandboxSends, "herald_idempotency_keys": p.IdempotencyKeys} {
		rt.metrics.GetOrCreateCounter(`herald_pruned_records_total{table="` + table + `"}`).Add(int(n))
	}
}

// pruneConsumed deletes the consumed rows of the router's SQL topics older than
// rt.retain.
func (rt *Router) pruneConsumed(ctx context.Context) {
	for _, topic := range rt.sqlTopics {
		n, err := rt.db.PruneConsumed(ctx, topic, rt.retain)
		if err != nil && ctx.Err() == nil {
			rt.log.Warn("pruning consumed rows failed, will retry", "topic", topic, "error", err)
		}
		rt.metrics.GetOrCreateCounter(`herald_pruned_rows_total{topic="` + topic + `"}`).Add(int(n))
	}
}

// sharedPublisher is a publisher several handlers use: the router closes a handler's
// publisher when the handler stops, and Sarama's must be closed once (by Router.Close).
type sharedPublisher struct{ message.Publisher }

func (sharedPublisher) Close() error { return nil }

// directInbox says whether the fan-out writes in-app messages to the inbox itself
// (handlers.FanOutConfig.DirectInbox, ADR 0013): when the in-app channel is delivered
// by the built-in inbox and its delivery handler would apply no recipient cap and no
// rate limit.
func directInbox(cfg Config) bool {
	_, builtin := cfg.Providers[notify.ChannelInApp].(*inbox.Provider)
	return builtin && cfg.Delivery.Cap == nil && cfg.Delivery.RateLimiters[notify.ChannelInApp] == nil
}

// kafkaFanOut records a fan-out in SQL, then publishes its messages to Kafka. Not one
// transaction: a crash in between redelivers the event, whose fan-out then changes
// nothing recorded and publishes again (the delivery handlers absorb the repeat).
type kafkaFanOut struct {
	db    *sqlstore.DB
	pub   message.Publisher
	topic func(string) string
}

func (k kafkaFanOut) CommitFanOut(ctx context.Context, f sqlstore.FanOut) error {
	msgs := f.Messages
	f.Messages = nil
	if err := k.db.CommitFanOut(ctx, f); err != nil {
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
func (rt *Router) Close() error {
	return errors.Join(rt.Router.Close(), rt.closeTransports())
}

// closeTransports closes the subscribers, then the publishers.
func (rt *Router) closeTransports() error {
	var err error
	for _, c := range rt.closers {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing transport: %w", cerr))
		}
	}
	return err
}
