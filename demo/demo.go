// Package demo simulates a banking core in front of a running Herald: it creates demo
// customers, commits transactions (a ledger row and the outbox row in one transaction),
// waits until every delivery has ended and summarises what happened.
package demo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"github.com/heraldhq/herald/benchmarks/loadgen"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/service"
)

// Config of a demo run.
type Config struct {
	// Events to commit. Required.
	Events int
	// Customers to spread them over. Default 50.
	Customers int
	// Writers committing concurrently, like a core's connection pool. Default 4.
	Writers int
	// Timeout for the whole run. Default 10 minutes.
	Timeout time.Duration
	// Progress, when set, is told how many events have been processed so far.
	Progress func(done, total int)
}

// Latency percentiles in milliseconds, from the event's commit to the provider's
// acceptance.
type Latency = loadgen.Latency

// Deliveries counts deliveries.
type Deliveries struct {
	Total     int            `json:"total"`
	ByStatus  map[string]int `json:"by_status"`
	ByChannel map[string]int `json:"by_channel"`
}

// Summary is the result of a run (the JSON that herald demo --json prints).
type Summary struct {
	Events     int        `json:"events"`
	Deliveries Deliveries `json:"deliveries"`
	Duplicates int        `json:"duplicates"`
	// Retries counts provider calls beyond each delivery's first.
	Retries int `json:"retries"`
	// Requeued counts messages parked in the persistent requeue (transient failures
	// past the quick retries, and deferrals by breakers and throttles).
	Requeued        int     `json:"requeued"`
	Expired         int     `json:"expired"`
	Failed          int     `json:"failed"`
	Fallbacks       int     `json:"fallbacks"`
	ElapsedSeconds  float64 `json:"elapsed_seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	LatencyMs       Latency `json:"latency_ms"`
	RunID           string  `json:"run_id"`
}

// Run commits cfg.Events events into svc's outbox while svc's pipeline runs, and
// waits until all of them and their deliveries have ended.
func Run(ctx context.Context, svc *service.Service, cfg Config) (Summary, error) {
	if cfg.Events <= 0 {
		return Summary{}, errors.New("demo: --events must be positive")
	}
	if cfg.Customers <= 0 {
		cfg.Customers = 50
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	runID := fmt.Sprintf("%x", time.Now().UnixNano())
	prefix := "demo-" + runID + "-"
	if err := createCustomers(ctx, svc, cfg.Customers); err != nil {
		return Summary{}, err
	}
	if _, err := svc.DB.W.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS demo_core_ledger (
		id VARCHAR(64) PRIMARY KEY, account_id VARCHAR(64) NOT NULL, amount VARCHAR(32) NOT NULL, created_at BIGINT NOT NULL)`); err != nil {
		return Summary{}, fmt.Errorf("creating the demo ledger: %w", err)
	}

	requeuedBefore := requeued(svc)
	pctx, stopPipeline := context.WithCancel(ctx)
	pipeErr := make(chan error, 1)
	go func() { pipeErr <- svc.RunPipeline(pctx) }()
	defer func() {
		stopPipeline()
		if err := <-pipeErr; err != nil && !errors.Is(err, context.Canceled) {
			slog.Default().Warn("demo pipeline stopped with an error", "error", err)
		}
	}()
	select {
	case <-svc.Router.Running():
	case err := <-pipeErr:
		return Summary{}, fmt.Errorf("starting the pipeline: %w", err)
	}

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Writers)
	for w := 0; w < cfg.Writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.Events {
					return
				}
				if err := commitOne(ctx, svc, prefix, i, cfg.Customers); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return Summary{}, err
	}

	// Poll cheaply: the fan-out count, then only unfinished deliveries.
	for {
		done, err := svc.DB.Notifications().CountPrefix(ctx, prefix)
		if err != nil {
			return Summary{}, err
		}
		if cfg.Progress != nil {
			cfg.Progress(done, cfg.Events)
		}
		if done >= cfg.Events {
			pending, err := svc.DB.Deliveries().Pending(ctx, prefix)
			if err != nil {
				return Summary{}, err
			}
			if pending == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return Summary{}, fmt.Errorf("demo: waiting for deliveries: %w", ctx.Err())
		case err := <-pipeErr:
			pipeErr <- err
			return Summary{}, fmt.Errorf("demo: pipeline stopped: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)

	sum, err := svc.DB.Deliveries().Summarize(ctx, prefix, true)
	if err != nil {
		return Summary{}, err
	}
	lat, err := loadgen.ReadLatencies(ctx, svc.DB, prefix, time.Time{})
	if err != nil {
		return Summary{}, err
	}
	dups, err := svc.DB.SandboxSends().Duplicates(ctx, prefix)
	if err != nil {
		return Summary{}, err
	}
	out := Summary{
		Events:          cfg.Events,
		Deliveries:      Deliveries{Total: sum.Total, ByStatus: map[string]int{}, ByChannel: map[string]int{}},
		Duplicates:      dups,
		ElapsedSeconds:  round(elapsed.Seconds(), 3),
		EventsPerSecond: round(float64(cfg.Events)/elapsed.Seconds(), 1),
		LatencyMs:       loadgen.Percentiles(lat.All),
		RunID:           runID,
		Retries:         sum.Retries,
		Requeued:        requeued(svc) - requeuedBefore,
		Expired:         sum.ByStatus[notify.StatusExpired],
		Failed:          sum.ByStatus[notify.StatusFailed],
		Fallbacks:       sum.Fallbacks,
	}
	for k, v := range sum.ByStatus {
		out.Deliveries.ByStatus[string(k)] = v
	}
	for k, v := range sum.ByChannel {
		out.Deliveries.ByChannel[string(k)] = v
	}
	return out, nil
}

// requeued sums herald_requeued_total over its labels.
func requeued(svc *service.Service) int {
	n := 0
	for _, name := range svc.Metrics.ListMetricNames() {
		if strings.HasPrefix(name, "herald_requeued_total{") {
			n += int(svc.Metrics.GetOrCreateCounter(name).Get()) //nolint:gosec // a count of messages
		}
	}
	return n
}

func createCustomers(ctx context.Context, svc *service.Service, n int) error {
	zones := []string{"Asia/Shanghai", "Asia/Hong_Kong", "Europe/London", "America/New_York"}
	for i := 0; i < n; i++ {
		locale := "zh-CN"
		if i%4 == 3 {
			locale = "en"
		}
		r := notify.Recipient{
			ID: fmt.Sprintf("demo-cust-%04d", i), Locale: locale, TimeZone: zones[i%len(zones)],
			Contacts: notify.Contacts{
				Phone:        notify.Phone(fmt.Sprintf("+86138%08d", i)),
				Email:        notify.Email(fmt.Sprintf("customer%04d@example.com", i)),
				WeChatOpenID: fmt.Sprintf("o-demo-%04d", i),
				PushTokens:   []string{fmt.Sprintf("push-token-%04d", i)},
			},
			// An SMS that fails for good goes to WeChat instead.
			Preferences: notify.Preferences{Fallback: map[notify.Channel]notify.Channel{notify.ChannelSMS: notify.ChannelWeChat}},
		}
		if _, err := svc.DB.Recipients().Put(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// commitOne commits transaction i the way a core does: ledger row and outbox row in
// one database transaction.
func commitOne(ctx context.Context, svc *service.Service, prefix string, i, customers int) error {
	rng := rand.New(rand.NewPCG(uint64(i), 42)) //nolint:gosec // demo data, reproducible on purpose
	c := i % customers
	account := fmt.Sprintf("62220202%08d", c)
	amount := decimal.New(rng.Int64N(500000)+100, -2) // 1.00 .. 5000.99
	balance := decimal.New(rng.Int64N(10000000)+1000, -2)
	e := notify.Event{
		ID: fmt.Sprintf("%s%07d", prefix, i), OccurredAt: time.Now().UTC(),
		AccountID: account, CustomerID: fmt.Sprintf("demo-cust-%04d", c), Currency: "CNY",
		Amount: &amount, BalanceAfter: &balance, Direction: "debit", Counterparty: "Demo Merchant",
	}
	switch p := rng.IntN(100); {
	case p < 85:
		e.Type = notify.TypeTransactionPosted
		if p%2 == 0 {
			e.Direction = "credit"
		}
	case p < 90:
		e.Type = notify.TypeTransactionDeclined
		e.Extra = map[string]any{"reason": "insufficient funds"}
	case p < 95:
		e.Type = notify.TypeBalanceLow
		e.Amount = nil
	case p < 98:
		e.Type = notify.TypeOTPRequested
		e.Amount, e.BalanceAfter = nil, nil
		e.Extra = map[string]any{"code": fmt.Sprintf("%06d", rng.IntN(1000000))}
	default:
		e.Type = notify.TypeSecurityLogin
		e.Amount, e.BalanceAfter = nil, nil
		e.Extra = map[string]any{"ip": "203.0.113.9", "device": "Pixel 9"}
	}
	return svc.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, svc.DB.Rebind(`INSERT INTO demo_core_ledger (id, account_id, amount, created_at) VALUES (?, ?, ?, ?)`),
			e.ID, account, amount.String(), time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("demo ledger: %w", err)
		}
		return svc.Outbox.Write(ctx, tx, e)
	})
}

func round(x float64, places int) float64 {
	p := math.Pow10(places)
	return math.Round(x*p) / p
}
