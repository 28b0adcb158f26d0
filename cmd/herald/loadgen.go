package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/benchmarks/loadgen"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/service"
)

type loadgenCmd struct {
	config.Config `embed:""`
	Writers       int           `help:"Concurrent core writers (single-row INSERT+COMMIT each)." default:"8"`
	Rate          string        `help:"Events per second, or max." default:"max"`
	Events        int           `help:"Events to commit (0: run for --duration)."`
	Duration      time.Duration `help:"How long to commit events when --events is 0." default:"10s"`
	Backlog       int           `help:"Events committed before Herald starts, then drained (catch-up after an outage)."`
	Customers     int           `help:"Customers the events spread over." default:"1000"`
	Mix           string        `help:"Event types and their weights, e.g. transaction.posted=90,otp.requested=5,balance.low=5 (also transaction.declined, security.login)." default:"transaction.posted=1"`
	Timeout       time.Duration `help:"How long Herald may take to finish after the last commit." default:"2m"`
	NoBaseline    bool          `name:"no-baseline" help:"Skip the database baselines."`
	Warmup        time.Duration `help:"Leave the events committed in the first DUR out of the latency percentiles (still checked for lost and duplicates): Herald opens connections and prepares statements in its first second."`
	Target        string        `help:"URL of a Herald already running on the same database (else one runs in this process)."`
	JSON          bool          `name:"json" help:"Print exactly one JSON object on stdout."`
	Report        string        `help:"Write a self-contained HTML report to this file."`
	CPUProfile    string        `name:"cpuprofile" help:"Write a CPU profile of the run (Herald in this process and the core's writers; add --no-baseline to leave the baselines out) to this file, for go tool pprof."`
}

// inProcess runs Herald's pipeline in this process.
type inProcess struct {
	svc    *service.Service
	cancel context.CancelFunc
	done   chan error
}

func (p *inProcess) Start(ctx context.Context) error {
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan error, 1)
	go func() { p.done <- p.svc.RunPipeline(ctx) }()
	select {
	case <-p.svc.Router.Running():
		return nil
	case err := <-p.done:
		return fmt.Errorf("starting the pipeline: %w", err)
	}
}

// Ended reads the ended deliveries from the pipeline's counters.
func (p *inProcess) Ended(context.Context) (int64, error) {
	return loadgen.EndedDeliveriesIn(p.svc.Metrics), nil
}

func (p *inProcess) Stop() error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	err := <-p.done
	p.cancel = nil
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// running is a Herald started elsewhere: Start checks it is ready.
type running struct {
	url   string
	mu    sync.Mutex
	ended int64     // the count read last from /metrics
	at    time.Time // when
}

// get asks the running Herald for path.
func (r *running) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("--target %s: %w", r.url, err)
	}
	return resp, nil
}

func (r *running) Start(ctx context.Context) error {
	resp, err := r.get(ctx, "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("--target %s is not ready (%s)", r.url, resp.Status)
	}
	return nil
}

func (*running) Stop() error { return nil }

// scrapeEvery is how often loadgen reads a running Herald's /metrics: each read
// evaluates its gauges, two of which ask the database (the outbox lag, the parked
// requeues).
const scrapeEvery = 250 * time.Millisecond

// Ended reads the ended deliveries from the running Herald's /metrics, at most every
// scrapeEvery (the count read last in between).
func (r *running) Ended(ctx context.Context) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && time.Since(r.at) < scrapeEvery {
		return r.ended, nil
	}
	resp, err := r.get(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/metrics: %s", r.url, resp.Status)
	}
	n, err := loadgen.EndedDeliveries(resp.Body)
	if err != nil {
		return 0, err
	}
	r.ended, r.at = n, time.Now()
	return n, nil
}

func (c *loadgenCmd) Run() error {
	tuneGC(os.Getenv, c.Config)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := loadgen.Config{Writers: c.Writers, Events: c.Events, Duration: c.Duration, Backlog: c.Backlog,
		Customers: c.Customers, Timeout: c.Timeout, Warmup: c.Warmup}
	if c.Warmup < 0 || (c.Events == 0 && c.Warmup >= c.Duration) {
		return fmt.Errorf("--warmup %s must be at least 0 and shorter than --duration %s", c.Warmup, c.Duration)
	}
	if c.Events > 0 {
		cfg.Duration = 0
	}
	mix, err := loadgen.ParseMix(c.Mix)
	if err != nil {
		return fmt.Errorf("--mix: %w", err)
	}
	cfg.Mix = mix
	if c.Rate != "max" {
		r, err := strconv.ParseFloat(c.Rate, 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("--rate must be a positive number or max, not %q", c.Rate)
		}
		cfg.Rate = r
	}
	if c.NoBaseline {
		cfg.BaselineFor = -1
	}
	if len(c.KafkaBrokers) > 0 {
		cfg.Transport = "kafka"
	}
	logger := newLogger(c.LogFormat, "warn", os.Stderr)
	var db *sqlstore.DB
	var herald loadgen.Pipeline
	if c.Target != "" {
		var err error
		if db, err = openDB(c.Config); err != nil {
			return err
		}
		defer db.Close() //nolint:errcheck // measured already
		herald = &running{url: c.Target}
	} else {
		svc, err := service.Open(ctx, c.Config, logger)
		if err != nil {
			return err
		}
		defer svc.Close() //nolint:errcheck // measured already
		db, herald = svc.DB, &inProcess{svc: svc}
	}
	if isatty.IsTerminal(os.Stderr.Fd()) && !c.JSON {
		bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("deliveries ended"), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		cfg.Progress = func(done, total int) { bar.ChangeMax(total); _ = bar.Set(done) }
		defer bar.Finish() //nolint:errcheck // cosmetic
	}
	stopProfile := func() error { return nil }
	if c.CPUProfile != "" {
		if stopProfile, err = startCPUProfile(c.CPUProfile); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
	}
	res, err := loadgen.Run(ctx, db, herald, cfg)
	if perr := stopProfile(); perr != nil {
		err = errors.Join(err, fmt.Errorf("--cpuprofile: %w", perr))
	}
	if err != nil {
		return err
	}
	if c.Report != "" {
		f, err := os.Create(c.Report)
		if err != nil {
			return err
		}
		if err := loadgen.WriteReport(f, res); err != nil {
			_ = f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if c.JSON {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	fmt.Printf("Herald load test on %s (%s topics), %d writers\n", res.Database, res.Transport, res.Writers)
	fmt.Printf("  events:      %d (%.1f/s), deliveries %d (%.1f/s), lost %d, duplicates %d\n",
		res.Events, res.EventsPerSecond, res.Deliveries, res.DeliveriesPerSecond, res.Lost, res.Duplicates)
	retried := ""
	if res.CoreRetries > 0 {
		retried = fmt.Sprintf(", %d transactions run again after a deadlock or a busy database", res.CoreRetries)
	}
	fmt.Printf("  core:        %.1f events/s committed%s\n", res.CommittedPerSecond, retried)
	if cfg.Rate > 0 && res.CommittedPerSecond < 0.95*cfg.Rate {
		fmt.Printf("               under --rate %s: the core's writers could not commit faster beside Herald on this database\n", c.Rate)
	}
	fmt.Printf("  latency ms:  p50 %.1f  p95 %.1f  p99 %.1f  max %.1f (outbox commit -> provider accepted)\n",
		res.LatencyMs.P50, res.LatencyMs.P95, res.LatencyMs.P99, res.LatencyMs.Max)
	fmt.Printf("  baseline:    %.0f single-row commits/s, %.0f rows/s drained; ratios %.3f and %.3f\n",
		res.Baseline.InsertCommitPerSecond, res.Baseline.DrainRowsPerSecond, res.RatioEventsToInsert, res.RatioEventsToDrain)
	if res.BacklogEventsPerSecond != nil {
		fmt.Printf("  backlog:     %.1f events/s drained\n", *res.BacklogEventsPerSecond)
	}
	switch {
	case res.KeepsUp == nil:
		fmt.Printf("  keeps up:    not judged: under 5 seconds of commits were measured (run longer, e.g. --duration 60s)\n")
	case *res.KeepsUp:
		fmt.Printf("  keeps up:    yes, the lag grew %.1f events/s (at most %d events behind the core)\n",
			*res.Lag.GrowthPerSecond, res.Lag.Max)
	default:
		fmt.Printf("  keeps up:    no, the lag grew %.1f events/s (%d events behind the core when it stopped)\n",
			*res.Lag.GrowthPerSecond, res.Lag.AtLastCommit)
	}
	if c := res.CPU; c != nil {
		fmt.Printf("  cpu:         this process %.1f s, other processes %.1f s (the database, if on this machine); %.0f%% of %d cores busy\n",
			c.ProcessSeconds, c.OthersSeconds, 100*c.BusyShare, c.Cores)
	}
	fmt.Printf("  memory:      %.1f MB RSS at most\n", res.RSSMBMax)
	return nil
}

// startCPUProfile profiles this process's CPU into the file at path until the returned
// function stops it and closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path) //nolint:gosec // the operator names the file (--cpuprofile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
