// Command herald turns a bank's transaction events into customer notifications.
// It parses flags and wires packages; the work happens in them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"gopkg.in/yaml.v3"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/demo"
	"github.com/heraldhq/herald/service"
)

var version = "dev"

type cli struct {
	Config      kong.ConfigFlag `help:"YAML configuration file (keys are the flag names)." env:"HERALD_CONFIG" type:"existingfile"`
	Serve       serveCmd        `cmd:"" help:"Run the API and the pipeline (with no configuration: the embedded SQLite default)."`
	Migrate     migrateCmd      `cmd:"" help:"Create or update every table Herald uses (idempotent)."`
	Demo        demoCmd         `cmd:"" help:"Simulate a banking core, deliver everything through sandbox providers, print a summary."`
	Loadgen     loadgenCmd      `cmd:"" help:"Act as a banking core under load: measure Herald's throughput and latency against the database's own limits."`
	Poison      poisonCmd       `cmd:"" help:"List, replay or delete poisoned messages."`
	Healthcheck healthcheckCmd  `cmd:"" help:"Exit 0 when the URL answers 200 (for container health checks)."`
	Version     versionCmd      `cmd:"" help:"Print the version."`
}

type serveCmd struct {
	config.Config `embed:""`
}

func (c *serveCmd) Run() error {
	tuneGC(os.Getenv, c.Config)
	logger := newLogger(c.LogFormat, c.LogLevel, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	svc, err := service.Open(ctx, c.Config, logger)
	if err != nil {
		return err
	}
	runErr := svc.Run(ctx)
	return errors.Join(runErr, svc.Close())
}

type migrateCmd struct {
	config.Config `embed:""`
}

func (c *migrateCmd) Run() error {
	db, err := openDB(c.Config)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "migrated %s\n", db.Location)
	return db.Close()
}

type demoCmd struct {
	config.Config `embed:""`
	Events        int           `help:"Transactions the simulated core commits." default:"500"`
	Customers     int           `help:"Demo customers." default:"50"`
	Writers       int           `help:"Concurrent core writers." default:"4"`
	Timeout       time.Duration `help:"Give up when not every delivery has ended by then." default:"10m"`
	JSON          bool          `name:"json" help:"Print exactly one JSON object on stdout."`
	Verbose       bool          `help:"Log every send (otherwise only warnings)."`

	FailRate          string   `name:"fail-rate" help:"Share (0..1) of sandbox sends that fail transiently: a number, or channel=number,... (sets --sandbox-fail-rate)."`
	PermanentFailRate string   `name:"permanent-fail-rate" help:"Share (0..1) of sandbox sends rejected for good (sets --sandbox-permanent-fail-rate)."`
	Latency           string   `name:"latency" help:"Latency of each sandbox send: a duration, or channel=duration,... (sets --sandbox-latency)."`
	Outage            []string `name:"outage" sep:"," help:"Sandbox provider outages, channel:start+duration from start-up, e.g. sms:5s+30s (sets --sandbox-outage)."`
}

func (c *demoCmd) Run() error {
	tuneGC(os.Getenv, c.Config)
	level := "warn"
	if c.Verbose {
		level = c.LogLevel
	}
	logger := newLogger(c.LogFormat, level, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.FailRate != "" {
		c.SandboxFailRate = c.FailRate
	}
	if c.PermanentFailRate != "" {
		c.SandboxPermanentFailRate = c.PermanentFailRate
	}
	if c.Latency != "" {
		c.SandboxLatency = c.Latency
	}
	if len(c.Outage) > 0 {
		c.SandboxOutages = c.Outage
	}
	svc, err := service.Open(ctx, c.Config, logger)
	if err != nil {
		return err
	}
	defer svc.Close() //nolint:errcheck // the summary is already computed

	cfg := demo.Config{Events: c.Events, Customers: c.Customers, Writers: c.Writers, Timeout: c.Timeout}
	var bar *progressbar.ProgressBar
	if isatty.IsTerminal(os.Stderr.Fd()) {
		bar = progressbar.NewOptions(c.Events, progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("events delivered"), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		cfg.Progress = func(done, _ int) { _ = bar.Set(done) }
	}
	sum, err := demo.Run(ctx, svc, cfg)
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		return enc.Encode(sum)
	}
	fmt.Printf("Herald demo on %s\n", svc.DB.Location)
	fmt.Printf("  events:       %d in %.2fs (%.0f events/s)\n", sum.Events, sum.ElapsedSeconds, sum.EventsPerSecond)
	fmt.Printf("  deliveries:   %d by status %v\n", sum.Deliveries.Total, sum.Deliveries.ByStatus)
	fmt.Printf("                by channel %v\n", sum.Deliveries.ByChannel)
	fmt.Printf("  duplicates:   %d\n", sum.Duplicates)
	fmt.Printf("  reliability:  %d retries, %d requeued, %d expired, %d failed, %d fallbacks\n",
		sum.Retries, sum.Requeued, sum.Expired, sum.Failed, sum.Fallbacks)
	fmt.Printf("  latency (ms): p50 %.1f  p95 %.1f  p99 %.1f  max %.1f (outbox commit -> provider accepted)\n",
		sum.LatencyMs.P50, sum.LatencyMs.P95, sum.LatencyMs.P99, sum.LatencyMs.Max)
	return nil
}

type poisonCmd struct {
	List   poisonListCmd   `cmd:"" help:"List poisoned messages, newest first."`
	Replay poisonReplayCmd `cmd:"" help:"Put poisoned messages back on their topics (herald serve handles them again)."`
	Delete poisonDeleteCmd `cmd:"" help:"Delete poisoned messages for good."`
}

func openDB(c config.Config) (*sqlstore.DB, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	db, err := sqlstore.OpenWith(context.Background(), c.DB, sqlstore.Options{MaxConns: c.DBMaxConns})
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(context.Background(), c.Channels); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

type poisonListCmd struct {
	config.Config `embed:""`
	Topic         string `help:"Only this topic (events, deliveries.sms, ...)."`
	Limit         int    `help:"How many." default:"50"`
	Cursor        string `help:"Continue after this entry id (next_cursor of the previous page)."`
	JSON          bool   `name:"json" help:"Print one JSON object."`
}

func (c *poisonListCmd) Run() error {
	db, err := openDB(c.Config)
	if err != nil {
		return err
	}
	defer db.Close() //nolint:errcheck // read only
	es, next, err := db.Poison().List(context.Background(), c.Topic, c.Cursor, c.Limit)
	if err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"poison": es, "next_cursor": next})
	}
	for _, e := range es {
		fmt.Printf("%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.CreatedAt.Format(time.RFC3339), e.Topic, e.Handler, e.MessageUUID, e.Reason)
	}
	if next != "" {
		fmt.Fprintf(os.Stderr, "more: --cursor %s\n", next)
	}
	return nil
}

type poisonReplayCmd struct {
	config.Config `embed:""`
	IDs           []int64 `arg:"" name:"id" help:"Poison entry ids."`
}

func (c *poisonReplayCmd) Run() error {
	db, err := openDB(c.Config)
	if err != nil {
		return err
	}
	defer db.Close() //nolint:errcheck // each replay is committed
	return eachID(c.IDs, "replaying", func(id int64) error {
		e, err := db.Poison().Replay(context.Background(), id)
		if err == nil {
			fmt.Printf("replayed %d to %s (%s)\n", id, e.Topic, e.MessageUUID)
		}
		return err
	})
}

// eachID runs fn for every id, goes on after a failure and reports every failure.
func eachID(ids []int64, doing string, fn func(id int64) error) error {
	var errs []error
	for _, id := range ids {
		if err := fn(id); err != nil {
			errs = append(errs, fmt.Errorf("%s %d: %w", doing, id, err))
		}
	}
	return errors.Join(errs...)
}

type poisonDeleteCmd struct {
	config.Config `embed:""`
	IDs           []int64 `arg:"" name:"id" help:"Poison entry ids."`
}

func (c *poisonDeleteCmd) Run() error {
	db, err := openDB(c.Config)
	if err != nil {
		return err
	}
	defer db.Close() //nolint:errcheck // each delete is committed
	return eachID(c.IDs, "deleting", func(id int64) error {
		err := db.Poison().Delete(context.Background(), id)
		if err == nil {
			fmt.Printf("deleted %d\n", id)
		}
		return err
	})
}

type healthcheckCmd struct {
	URL string `help:"URL to check." default:"http://127.0.0.1:8080/readyz"`
}

func (c healthcheckCmd) Run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", c.URL, resp.Status)
	}
	return nil
}

type versionCmd struct{}

func (versionCmd) Run() error {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Println("herald", v)
	return nil
}

func newLogger(format, level string, w io.Writer) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" || (format == "auto" && !isatty.IsTerminal(os.Stderr.Fd())) {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// yamlLoader reads a flat YAML file whose keys are flag names, shared by every command
// (kong's own YAML loader nests keys under command names). A flag's environment
// variable, when set, wins over the file; an unknown key is an error.
func yamlLoader(r io.Reader) (kong.Resolver, error) {
	values := map[string]any{}
	if err := yaml.NewDecoder(r).Decode(&values); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading YAML configuration: %w", err)
	}
	return yamlResolver(values), nil
}

type yamlResolver map[string]any

func (y yamlResolver) Validate(app *kong.Application) error {
	known := map[string]bool{}
	_ = kong.Visit(app, func(n kong.Visitable, next kong.Next) error {
		if f, ok := n.(*kong.Flag); ok {
			known[f.Name] = true
		}
		return next(nil)
	})
	var unknown []string
	for k := range y {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("configuration file: unknown keys %s", strings.Join(unknown, ", "))
	}
	return nil
}

func (y yamlResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	v, ok := y[flag.Name]
	if !ok {
		return nil, nil
	}
	for _, env := range flag.Envs {
		if _, set := os.LookupEnv(env); set {
			return nil, nil
		}
	}
	if list, ok := v.([]any); ok { // e.g. api-keys: [a, b]
		parts := make([]string, len(list))
		for i, x := range list {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ","), nil
	}
	return v, nil
}

func main() {
	var c cli
	ctx := kong.Parse(&c,
		kong.Name("herald"),
		kong.Description("Herald turns a bank's transaction events into customer notifications."),
		kong.UsageOnError(),
		kong.Configuration(yamlLoader),
	)
	if err := ctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}
