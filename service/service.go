// Package service assembles a running Herald from its Config: database, providers,
// router and HTTP API, with one metrics set, and runs them until stopped.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/heraldhq/herald/adapters/inbox"
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
}

// Open validates cfg, opens and migrates the database and assembles the pipeline and
// the API. Close releases what Open took.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	db, err := sqlstore.OpenWith(ctx, cfg.DB, sqlstore.Options{MaxConns: cfg.DBMaxConns})
	if err != nil {
		return nil, err
	}
	s := &Service{Config: cfg, DB: db, Metrics: metrics.NewSet(), log: logger}
	if err := s.assemble(ctx); err != nil {
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
	sb, err := sandbox.New(sandbox.Config{Recorder: s.DB.SandboxSends(), Latency: cfg.SandboxLatency}, s.log)
	if err != nil {
		return err
	}
	in, err := inbox.New(s.DB.Inbox())
	if err != nil {
		return err
	}
	providers := map[notify.Channel]handlers.Provider{}
	for _, ch := range channels {
		if ch == notify.ChannelInApp {
			providers[ch] = in
		} else {
			providers[ch] = sb
		}
	}
	retries := cfg.MaxRetries
	if retries == 0 {
		retries = -1 // none
	}
	s.Router, err = router.New(router.Config{
		DB: s.DB, Providers: providers, Renderer: renderer, Metrics: s.Metrics,
		Transport: sqlstore.TransportConfig{PollInterval: cfg.PollInterval, BatchSize: cfg.BatchSize},
		Retry:     router.RetryConfig{MaxRetries: retries},
		OTPTTL:    cfg.OTPTTL,
		Kafka:     cfg.Kafka(),
	}, s.log)
	if err != nil {
		return err
	}
	if s.Outbox, err = outbox.New(outbox.Config{Dialect: s.DB.Dialect}); err != nil {
		return err
	}
	s.Server, err = server.New(server.Config{
		DB: s.DB, Outbox: s.Outbox, Metrics: s.Metrics, APIKeys: cfg.APIKeys, BodyLimit: cfg.BodyLimit,
		Ready: s.running.Load,
	}, s.log)
	return err
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
	return errors.Join(s.Router.Close(), s.DB.Close())
}
