// Package service assembles a running Herald from its Config: database, providers,
// router and HTTP API, with one metrics set, and runs them until stopped.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"

	"github.com/heraldhq/herald/adapters/inbox"
	"github.com/heraldhq/herald/adapters/redis"
	"github.com/heraldhq/herald/adapters/sandbox"
	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/handlers"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/router"
	"github.com/heraldhq/herald/server"
	"github.com/heraldhq/herald/templates"
)

// Service is one Herald instance.
type Service struct {
	Config  config.Config
	DB      *sqlstore.DB
	Metrics *metrics.Set
	Router  *router.Router
	Server  *server.Server
	Outbox  *outbox.Writer

	log     *slog.Logger
	running atomic.Bool
	closers []io.Closer
}

// Open validates cfg, opens and migrates the database and assembles the pipeline and
// the API. Close releases what Open took.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	db, err := sqlstore.OpenWith(ctx, cfg.DB, sqlstore.Options{MaxConns: cfg.DBMaxConns, Committers: cfg.DBCommitters})
	if err != nil {
		return nil, err
	}
	s := &Service{Config: cfg, DB: db, Metrics: metrics.NewSet(), log: logger}
	if err := s.assemble(ctx); err != nil {
		for _, c := range s.closers {
			_ = c.Close()
		}
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Service) assemble(ctx context.Context) error {
	cfg := s.Config
	channels := cfg.NotifyChannels()
	names := make([]string, len(channels))
	for i, c := range channels {
		names[i] = string(c)
	}
	if err := s.DB.Migrate(ctx, names); err != nil {
		return err
	}
	renderer, err := templates.New(templates.Config{Bank: cfg.Bank, DefaultLocale: cfg.DefaultLocale,
		DefaultTimeZone: cfg.DefaultTimeZone, OTPTTL: cfg.OTPTTL})
	if err != nil {
		return err
	}
	faults, latency, err := cfg.Sandbox().Parse(channels)
	if err != nil {
		return err
	}
	in, err := inbox.New(s.DB.Inbox())
	if err != nil {
		return err
	}
	configured := Built{}
	if cfg.Providers != "" {
		f, err := LoadProviders(cfg.Providers)
		if err != nil {
			return err
		}
		configured, err = f.Build(ctx, Deps{Tokens: s.DB.Recipients(), Reports: countedReports{s.DB.Deliveries(), s.Metrics}})
		s.closers = append(s.closers, configured.Closers...)
		if err != nil {
			return fmt.Errorf("providers file %s:\n%w", cfg.Providers, err)
		}
	}
	providers := map[notify.Channel]handlers.Provider{}
	for _, ch := range channels {
		if p, ok := configured.ByChannel[ch]; ok {
			providers[ch] = p
			s.log.Info("channel provider", "channel", ch, "provider", configured.Names[ch])
			continue
		}
		if ch == notify.ChannelInApp {
			providers[ch] = in
			continue
		}
		if cfg.Providers != "" {
			s.log.Warn("no provider configured for the channel: the sandbox records its messages and sends nothing", "channel", ch)
		}
		if providers[ch], err = sandbox.New(sandbox.Config{Recorder: s.DB.SandboxSends(), Latency: latency[ch],
			Faults: faults[ch]}, s.log); err != nil {
			return err
		}
	}
	retries := cfg.MaxRetries
	if retries == 0 {
		retries = -1 // none
	}
	delivery, err := s.deliveryConfig(ctx)
	if err != nil {
		return err
	}
	s.Router, err = router.New(router.Config{
		DB: s.DB, Providers: providers, Renderer: renderer, Metrics: s.Metrics,
		Transport:      sqlstore.TransportConfig{PollInterval: cfg.PollInterval, BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency},
		Retry:          router.RetryConfig{MaxRetries: retries},
		OTPTTL:         cfg.OTPTTL,
		Kafka:          cfg.Kafka(),
		Delivery:       delivery,
		RetainConsumed: cfg.RetainConsumed,
		RetainRecords:  cfg.RetainRecords,
	}, s.log)
	if err != nil {
		return err
	}
	if s.Outbox, err = outbox.New(outbox.Config{Dialect: s.DB.Dialect}); err != nil {
		return err
	}
	s.Server, err = server.New(server.Config{
		DB: s.DB, Outbox: s.Outbox, Metrics: s.Metrics, APIKeys: cfg.APIKeys, BodyLimit: cfg.BodyLimit,
		Ready: s.running.Load, Reporters: configured.Reporters,
	}, s.log)
	return err
}

// deliveryConfig builds the delivery guards: budgets, breakers, rate limits and the
// recipient cap, in process and SQL, or shared through Redis when configured.
func (s *Service) deliveryConfig(ctx context.Context) (router.DeliveryConfig, error) {
	cfg := s.Config
	budgets, err := cfg.Budgets()
	if err != nil {
		return router.DeliveryConfig{}, err
	}
	rates, err := cfg.Rates()
	if err != nil {
		return router.DeliveryConfig{}, err
	}
	capMax, capWindow, err := cfg.Cap()
	if err != nil {
		return router.DeliveryConfig{}, err
	}
	failures := cfg.BreakerFailures
	if failures == 0 {
		failures = -1 // disabled
	}
	d := router.DeliveryConfig{
		SendTimeout:    cfg.SendTimeout,
		Budget:         handlers.RetryBudget{MaxAttempts: cfg.RetryMaxAttempts, MaxAge: cfg.RetryMaxAge},
		Budgets:        budgets,
		Breaker:        handlers.BreakerConfig{Failures: failures, OpenFor: cfg.BreakerOpenFor},
		RateLimiters:   map[notify.Channel]handlers.RateLimiter{},
		RequeueInitial: cfg.RequeueInitial, RequeueMax: cfg.RequeueMax,
	}
	if cfg.Redis != "" {
		rc, err := redis.Open(ctx, cfg.Redis)
		if err != nil {
			return d, err
		}
		s.closers = append(s.closers, rc)
		d.Store = &redis.Leases{Client: rc, Store: s.DB.Deliveries()}
		for ch, n := range rates {
			d.RateLimiters[ch] = redis.NewRateLimiter(rc, string(ch), n)
		}
		if capMax > 0 {
			d.Cap = redis.Cap{Client: rc, Max: capMax, Window: capWindow}
		}
		return d, nil
	}
	for ch, n := range rates {
		d.RateLimiters[ch] = rate.NewLimiter(rate.Limit(n), 1)
	}
	if capMax > 0 {
		d.Cap = handlers.SQLCap{Windows: s.DB.RecipientWindows(), Max: capMax, Window: capWindow}
	}
	return d, nil
}

// RunPipeline runs the router until ctx is done.
func (s *Service) RunPipeline(ctx context.Context) error {
	go func() {
		<-s.Router.Running()
		s.running.Store(true)
	}()
	defer s.running.Store(false)
	return s.Router.Run(ctx)
}

// Run runs the pipeline and the API until ctx is done, then shuts both down.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- s.RunPipeline(ctx) }()
	go func() {
		s.log.Info("herald listening", "addr", s.Config.Addr, "db", s.DB.Location, "auth", len(s.Config.APIKeys) > 0)
		if len(s.Config.APIKeys) == 0 {
			s.log.Warn("no API keys configured: the API accepts unauthenticated requests on loopback only")
		}
		errc <- s.Server.Listen(s.Config.Addr)
	}()
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		cancel()
	}
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	err := s.Server.Shutdown(sctx)
	return errors.Join(first, err)
}

// Close stops the pipeline and closes the database.
func (s *Service) Close() error {
	err := s.Router.Close()
	for _, c := range s.closers {
		err = errors.Join(err, c.Close())
	}
	return errors.Join(err, s.DB.Close())
}
