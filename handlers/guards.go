package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sony/gobreaker"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// RateLimiter paces one provider's sends: Wait blocks until the next send may go.
// *rate.Limiter (golang.org/x/time/rate) is the in-process one; adapters/redis has
// one shared by every instance.
type RateLimiter interface {
	Wait(ctx context.Context) error
}

// RecipientCap limits how many messages one address receives per window.
type RecipientCap interface {
	// Take counts one send to address. ok is false when the address has had its
	// share of the current window; retryAt is when the next window opens.
	Take(ctx context.Context, address string) (ok bool, retryAt time.Time, err error)
}

// SQLCap is the per-recipient cap kept in the database (shared by every instance on
// it): fixed windows, addresses hashed.
type SQLCap struct {
	Windows *sqlstore.RecipientWindows
	Max     int
	Window  time.Duration
}

// Take implements RecipientCap.
func (c SQLCap) Take(ctx context.Context, address string) (bool, time.Time, error) {
	start := time.Now().Truncate(c.Window)
	n, err := c.Windows.Incr(ctx, address, start)
	if err != nil {
		return false, time.Time{}, err
	}
	return n <= c.Max, start.Add(c.Window), nil
}

// BreakerConfig configures a provider's circuit breaker.
type BreakerConfig struct {
	// Failures in a row (transient ones: timeouts, 5xx, connection errors) that open
	// the breaker. Default 10; negative disables the breaker.
	Failures int
	// Ratio of transient failures that opens the breaker once a window has at least
	// 20 calls. Default 0.6. A provider failing one call in three now and then is
	// degraded, not down: retries handle it, the breaker stays closed.
	Ratio float64
	// Window over which the counts are kept while closed. Default 30s.
	Window time.Duration
	// OpenFor is how long the breaker stays open before one probe may pass. Default 10s.
	OpenFor time.Duration
}

func (c *BreakerConfig) setDefaults() {
	if c.Failures == 0 {
		c.Failures = 10
	}
	if c.Ratio == 0 {
		c.Ratio = 0.6
	}
	if c.Window == 0 {
		c.Window = 30 * time.Second
	}
	if c.OpenFor == 0 {
		c.OpenFor = 10 * time.Second
	}
}

// errBreakerOpen is the deferral reason while a provider's breaker is open.
var errBreakerOpen = errors.New("provider circuit breaker open")

// Breaker is a provider's circuit breaker (github.com/sony/gobreaker). Only transient
// failures count against the provider: a permanent one (a bad address) means it works.
type Breaker struct {
	cb      *gobreaker.CircuitBreaker
	openFor time.Duration
}

// NewBreaker returns the breaker of the named provider; its state is exported as
// herald_breaker_state{provider} (0 closed, 1 half-open, 2 open) and its changes
// counted in herald_breaker_transitions_total{provider,to}. Nil when disabled.
func NewBreaker(name string, cfg BreakerConfig, set *metrics.Set) *Breaker {
	cfg.setDefaults()
	if cfg.Failures < 0 {
		return nil
	}
	b := &Breaker{openFor: cfg.OpenFor}
	b.cb = gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     cfg.OpenFor,
		Interval:    cfg.Window,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(cfg.Failures) || //nolint:gosec // positive here
				(c.Requests >= 20 && float64(c.TotalFailures) >= cfg.Ratio*float64(c.Requests))
		},
		IsSuccessful: func(err error) bool {
			return err == nil || notify.ClassOf(err) != notify.ClassTransient
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			set.GetOrCreateCounter(fmt.Sprintf(`herald_breaker_transitions_total{provider=%q,to=%q}`, name, to.String())).Inc()
		},
	})
	set.NewGauge(fmt.Sprintf(`herald_breaker_state{provider=%q}`, name), func() float64 { return float64(b.cb.State()) })
	return b
}

// Open reports whether the breaker rejects calls now.
func (b *Breaker) Open() bool { return b != nil && b.cb.State() == gobreaker.StateOpen }

// Call runs send through the breaker. A call the breaker rejects returns a deferred
// error (notify.ClassDeferred) and rejected=true: the provider was not called.
func (b *Breaker) Call(send func() (notify.Receipt, error)) (r notify.Receipt, rejected bool, err error) {
	if b == nil {
		r, err = send()
		return r, false, err
	}
	out, err := b.cb.Execute(func() (any, error) { return send() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return notify.Receipt{}, true, notify.Defer(errBreakerOpen, b.openFor)
	}
	if out != nil {
		r = out.(notify.Receipt)
	}
	return r, false, err
}
