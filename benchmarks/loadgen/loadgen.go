// Package loadgen is `herald loadgen`: it acts as a banking core, committing events into
// the outbox with plain SQL in its own transactions (N writers, at a fixed rate or as
// fast as possible), against a Herald it runs in process or one already running on the
// same database, and measures per event the time from the outbox commit to the provider
// accepting each delivery. In the same run it measures two baselines on the same
// database: single-row INSERT+COMMIT with the same writers, and a batch drain of an
// outbox-shaped table.
package loadgen

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// Config of a run.
type Config struct {
	// Writers committing concurrently. Default 8.
	Writers int
	// Rate of events per second; 0 is as fast as possible.
	Rate float64
	// Events to commit; when 0, Duration decides.
	Events   int
	Duration time.Duration
	// Backlog events are committed before Herald starts, then drained.
	Backlog int
	// Customers the events spread over. Default 1000.
	Customers int
	// Mix of event types. Default DefaultMix.
	Mix Mix
	// Timeout for Herald to finish after the last commit. Default 2m.
	Timeout time.Duration
	// BaselineFor is how long the insert baseline runs. Default 3s; negative skips
	// both baselines.
	BaselineFor time.Duration
	// Warmup: the events committed in the first Warmup of the run are delivered and
	// checked (lost, duplicates) but left out of the latency percentiles. Default 0.
	Warmup time.Duration
	// Transport carries events between Herald's stages: "sql" (the default) or
	// "kafka". It is reported, not chosen here: the Herald under load decides.
	Transport string
	// Progress is told how many deliveries have ended of how many expected.
	Progress func(done, total int)
}

// Latency in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Baseline is what the database itself does.
type Baseline struct {
	InsertCommitPerSecond float64 `json:"insert_commit_per_second"`
	DrainRowsPerSecond    float64 `json:"drain_rows_per_second"`
}

// Result is the summary (`--json`).
type Result struct {
	Events          int     `json:"events"`
	Deliveries      int     `json:"deliveries"`
	EventsPerSecond float64 `json:"events_per_second"`
	// CommittedPerSecond is the core's pace: events over the time its writers took to
	// commit them (EventsPerSecond counts until the last delivery ended). Under --rate
	// when the machine or the database could not carry the load.
	CommittedPerSecond  float64 `json:"committed_per_second"`
	DeliveriesPerSecond float64 `json:"deliveries_per_second"`
	LatencyMs           Latency `json:"latency_ms"`
	// LatencyByChannelMs splits LatencyMs by channel: SMS and email pass the channel's
	// topic, a claim, the provider's call and the sent record; an in-app message
	// written by the fan-out (ADR 0013) is sent at the fan-out's commit.
	LatencyByChannelMs map[notify.Channel]Latency `json:"latency_ms_by_channel,omitempty"`
	// RecordLatencyMs is the first hop of every sent delivery: from the outbox commit
	// to the fan-out's record of the delivery.
	RecordLatencyMs Latency `json:"record_latency_ms"`
	// WarmupS is Config.Warmup in seconds, when set.
	WarmupS                *float64 `json:"warmup_s,omitempty"`
	Baseline               Baseline `json:"baseline"`
	RatioEventsToInsert    float64  `json:"ratio_events_to_insert_commit"`
	RatioEventsToDrain     float64  `json:"ratio_events_to_drain"`
	BacklogEventsPerSecond *float64 `json:"backlog_events_per_second,omitempty"`
	RatioBacklogToDrain    *float64 `json:"ratio_backlog_to_drain,omitempty"`
	Lost                   int      `json:"lost"`
	Duplicates             int      `json:"duplicates"`
	// Lag is how far the deliveries trailed the core's commits; KeepsUp is whether
	// Herald kept the core's pace (lagOf), absent for runs of under 5 measured seconds.
	Lag     *Lag  `json:"lag,omitempty"`
	KeepsUp *bool `json:"keeps_up,omitempty"`
	// CoreRetries counts the core's transactions run again after the database rolled
	// them back in a conflict (a deadlock, SQLite busy); a transaction that conflicts
	// coreAttempts times in a row fails the run.
	CoreRetries int     `json:"core_retries"`
	RSSMBMax    float64 `json:"rss_mb_max"`
	// CPU is where the processor time of the run went, from the first commit to the
	// last delivery; BacklogCPU the same for the catch-up of --backlog. Linux only.
	CPU        *CPU   `json:"cpu,omitempty"`
	BacklogCPU *CPU   `json:"backlog_cpu,omitempty"`
	Database   string `json:"database"`
	Transport  string `json:"transport"`
	Writers    int    `json:"writers"`
	// Mix is the share of each event type, in percent.
	Mix       map[string]float64 `json:"mix"`
	Series    []Point            `json:"-"`
	Latencies Latencies          `json:"-"`
}

// Point is one second of the run: events committed, and their SMS accepted by the
// provider (Sent) or ended, accepted or failed for good (Ended).
type Point struct {
	Second    int
	Committed int
	Sent      int
	Ended     int
}

// Pipeline is the Herald under load: in process (Start runs it) or already running.
type Pipeline interface {
	Start(ctx context.Context) error
	Stop() error
	// Ended counts the deliveries Herald has ended since it started (sent, failed,
	// expired or poisoned: herald_deliveries_total, EndedDeliveries), from its own
	// metrics, so that following a run costs the database nothing.
	Ended(ctx context.Context) (int64, error)
}

// Run measures. db is the database Herald uses; start runs Herald.
func Run(ctx context.Context, db *sqlstore.DB, herald Pipeline, cfg Config) (Result, error) {
	if cfg.Writers <= 0 {
		cfg.Writers = 8
	}
	if cfg.Customers <= 0 {
		cfg.Customers = 1000
	}
	if len(cfg.Mix) == 0 {
		cfg.Mix = DefaultMix
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Events <= 0 && cfg.Duration <= 0 {
		return Result{}, errors.New("loadgen: --events or --duration is required")
	}
	if cfg.Transport == "" {
		cfg.Transport = "sql"
	}
	res := Result{Database: db.Location, Transport: cfg.Transport, Writers: cfg.Writers, Mix: cfg.Mix.Shares()}
	rss := startRSS()
	defer rss.stop()
	if cfg.BaselineFor >= 0 {
		if cfg.BaselineFor == 0 {
			cfg.BaselineFor = 3 * time.Second
		}
		var err error
		if res.Baseline, err = baselines(ctx, db, cfg.Writers, cfg.BaselineFor); err != nil {
			return res, err
		}
	}
	if err := customers(ctx, db, cfg.Customers); err != nil {
		return res, err
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	ins := inserter{db: db, customers: cfg.Customers, mix: cfg.Mix, retries: new(atomic.Int64)}

	if cfg.Backlog > 0 {
		prefix := "lg-" + run + "-b-"
		if err := ins.commitBatch(ctx, prefix, cfg.Backlog); err != nil {
			return res, err
		}
		start := time.Now()
		cpu := startCPU()
		base := endedSoFar(ctx, herald)
		if err := herald.Start(ctx); err != nil {
			return res, err
		}
		if err := waitDone(ctx, db, herald, base, prefix, cfg.Backlog, cfg.Mix, cfg.Timeout, cfg.Progress); err != nil {
			return res, err
		}
		res.BacklogCPU = cpu.stop()
		v := round(float64(cfg.Backlog)/time.Since(start).Seconds(), 1)
		res.BacklogEventsPerSecond = &v
		if res.Baseline.DrainRowsPerSecond > 0 {
			r := round(v/res.Baseline.DrainRowsPerSecond, 3)
			res.RatioBacklogToDrain = &r
		}
	} else if err := herald.Start(ctx); err != nil {
		return res, err
	}
	defer herald.Stop() //nolint:errcheck // measured already

	prefix := "lg-" + run + "-m-"
	var lim *rate.Limiter
	if cfg.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, cfg.Writers))
	}
	var next atomic.Int64
	base := endedSoFar(ctx, herald)
	start := time.Now()
	cpu := startCPU()
	var wg sync.WaitGroup
	errc := make(chan error, cfg.Writers)
	for w := 0; w < cfg.Writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if cfg.Duration > 0 && time.Since(start) >= cfg.Duration {
					return
				}
				i := int(next.Add(1)) - 1
				if cfg.Events > 0 && i >= cfg.Events {
					return
				}
				if lim != nil {
					if err := lim.Wait(ctx); err != nil {
						errc <- err
						return
					}
				}
				if err := ins.commitOne(ctx, fmt.Sprintf("%s%08d", prefix, i), i); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
			if cfg.Progress != nil {
				total := cfg.Mix.deliveries(int(next.Load()))
				if done, ok := base.since(ctx, herald); ok {
					cfg.Progress(min(done, total), total)
				}
			}
		}
	}()
	wg.Wait()
	committing := time.Since(start)
	res.CoreRetries = int(ins.retries.Load())
	close(done)
	close(errc)
	if err := <-errc; err != nil {
		return res, err
	}
	events := int(next.Load())
	if cfg.Events > 0 {
		events = min(events, cfg.Events)
	}
	if err := waitDone(ctx, db, herald, base, prefix, events, cfg.Mix, cfg.Timeout, cfg.Progress); err != nil && !errors.Is(err, errTimeout) {
		return res, err
	}
	elapsed := time.Since(start)
	res.CPU = cpu.stop()
	sum, err := db.Deliveries().Summarize(ctx, prefix, true)
	if err != nil {
		return res, err
	}
	notified, err := db.Notifications().CountPrefix(ctx, prefix)
	if err != nil {
		return res, err
	}
	if res.Duplicates, err = db.SandboxSends().Duplicates(ctx, prefix); err != nil {
		return res, err
	}
	res.Events, res.Deliveries = events, sum.Total
	res.Lost = (events - notified) + (sum.Total - ended(sum))
	res.EventsPerSecond = round(float64(events)/elapsed.Seconds(), 1)
	res.CommittedPerSecond = round(float64(events)/committing.Seconds(), 1)
	res.DeliveriesPerSecond = round(float64(sum.Total)/elapsed.Seconds(), 1)
	var since time.Time
	if cfg.Warmup > 0 {
		since = start.Add(cfg.Warmup)
		w := cfg.Warmup.Seconds()
		res.WarmupS = &w
	}
	if res.Latencies, err = ReadLatencies(ctx, db, prefix, since); err != nil {
		return res, err
	}
	if cfg.Warmup > 0 && res.Latencies.All.TotalCount() == 0 && sum.Total > 0 {
		return res, fmt.Errorf("every event was committed within the warm-up of %s: no latency to report (shorten --warmup or run longer)", cfg.Warmup)
	}
	res.LatencyMs = Percentiles(res.Latencies.All)
	res.LatencyByChannelMs = res.Latencies.byChannel()
	res.RecordLatencyMs = Percentiles(res.Latencies.Record)
	if res.Baseline.InsertCommitPerSecond > 0 {
		res.RatioEventsToInsert = round(res.EventsPerSecond/res.Baseline.InsertCommitPerSecond, 3)
	}
	if res.Baseline.DrainRowsPerSecond > 0 {
		res.RatioEventsToDrain = round(res.EventsPerSecond/res.Baseline.DrainRowsPerSecond, 3)
	}
	if res.Series, err = series(ctx, db, prefix, start); err != nil {
		return res, err
	}
	lag, keepsUp := lagOf(res.Series, int(math.Ceil(cfg.Warmup.Seconds())))
	res.Lag, res.KeepsUp = &lag, keepsUp
	res.RSSMBMax = round(rss.stop(), 1)
	return res, nil
}

func ended(s sqlstore.Summary) int {
	return s.Total - s.ByStatus[notify.StatusQueued] - s.ByStatus[notify.StatusSending]
}

var errTimeout = errors.New("loadgen: Herald did not finish in time")

// endedCount is Herald's count of ended deliveries at the start of a phase; ok is
// false when Herald's metrics could not be read.
type endedCount struct {
	n  int64
	ok bool
}

func endedSoFar(ctx context.Context, herald Pipeline) endedCount {
	n, err := herald.Ended(ctx)
	return endedCount{n: n, ok: err == nil}
}

// since returns the deliveries Herald ended since c; false when its metrics cannot be
// read.
func (c endedCount) since(ctx context.Context, herald Pipeline) (int, bool) {
	if !c.ok {
		return 0, false
	}
	n, err := herald.Ended(ctx)
	if err != nil {
		return 0, false
	}
	return int(n - c.n), true
}

// waitDone waits until every event has been fanned out and every delivery has ended.
// Herald's own counters (Pipeline.Ended, read every 25 ms) say when to ask the
// database: once they have counted the phase's deliveries, or have not moved for 300
// ms (the run's channels are fewer than the mix's, or deliveries end on a path they
// miss), and at least every two seconds whatever they say (another instance on the
// same database ends deliveries too). Asking costs the database more as the run grows:
// on PostgreSQL the count reads every delivery of the run (there is no status index,
// ADR 0015; 12.0-13.2 ms a count at 60,000 deliveries, 0.57-0.77 s at 3,000,000, the
// end of a million-event run), and when it walked the status index it took about a
// sixth of PostgreSQL's CPU late in a catch-up, asked every 100 ms. So every question
// but the one after the counters say done waits at least askCostFactor times as long
// as the last count took (dueToAsk): the count takes at most about a tenth of one
// connection's time, whatever the run's size. The end is still asked about at most
// 200 ms after the counters say done.
func waitDone(ctx context.Context, db *sqlstore.DB, herald Pipeline, base endedCount, prefix string, events int, mix Mix, timeout time.Duration, progress func(int, int)) error {
	const every = 25 * time.Millisecond
	total := mix.deliveries(events)
	deadline := time.Now().Add(timeout)
	var asked, moved time.Time
	var cost time.Duration // the last count's
	last := -1
	for {
		done, ok := base.since(ctx, herald)
		st := countersUnread
		if ok {
			if progress != nil {
				progress(min(done, total), total)
			}
			if done != last {
				last, moved = done, time.Now()
			}
			switch {
			case done >= total:
				st = countersDone
			case time.Since(moved) >= askStillFor:
				st = countersStill
			default:
				st = countersMoving
			}
		}
		if dueToAsk(time.Since(asked), cost, st) {
			asked = time.Now()
			pending, err := db.Deliveries().Pending(ctx, prefix)
			if err != nil {
				return err
			}
			cost = time.Since(asked)
			if progress != nil && !ok {
				progress(max(total-pending, 0), total)
			}
			if pending == 0 {
				n, err := db.Notifications().CountPrefix(ctx, prefix)
				if err != nil {
					return err
				}
				if n >= events {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return errTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// When waitDone asks the database (see there).
const (
	askAtMost     = 200 * time.Millisecond // between two questions when the counters say done
	askStillFor   = 300 * time.Millisecond // counters still for this long (over a --target's scrape interval) may be done
	askAtLeast    = 2 * time.Second        // a question whatever the counters say
	askNoMetrics  = 100 * time.Millisecond // between two questions without Herald's counters
	askCostFactor = 10                     // questions but the one after done wait this many times the last count's duration
)

// countersState is what Herald's counters say of a phase, for dueToAsk.
type countersState int

const (
	countersUnread countersState = iota // they could not be read
	countersMoving                      // still counting ended deliveries
	countersStill                       // not moved for askStillFor: may be done (ends they miss), or a stall
	countersDone                        // every delivery of the phase counted
)

// dueToAsk says whether waitDone asks the database now, since the last question, which
// took cost, given what the counters say. Once they have counted every delivery it
// asks within askAtMost, so that a run's measured time does not grow; every other
// question waits at least askCostFactor times the last count's duration too, so that
// the count (which reads every delivery of the run on PostgreSQL) stays a small share
// of the database's work however large the run, and through a long stall (a provider
// outage) as well.
func dueToAsk(since, cost time.Duration, st countersState) bool {
	spaced := func(d time.Duration) bool { return since >= max(d, askCostFactor*cost) }
	switch st {
	case countersUnread:
		return spaced(askNoMetrics)
	case countersDone:
		return since >= askAtMost
	case countersStill:
		return spaced(askAtMost)
	default:
		return spaced(askAtLeast)
	}
}

// inserter writes events the way a core does: a plain INSERT into the outbox table
// in the writer's own transaction (docs/outbox.md); critical events (otp.requested,
// security.login) into the critical lane's table.
type inserter struct {
	db        *sqlstore.DB
	customers int
	mix       Mix
	// retries counts transactions run again after a conflict.
	retries *atomic.Int64
}

// coreAttempts bounds the runs of one core transaction that meets conflicts.
const coreAttempts = 5

// commit runs fn in a transaction of its own, and runs it again, as a core does, when
// the database rolled it back in a conflict with another transaction (a deadlock, a
// serialization failure, SQLite busy: sqlstore.Conflict). Each retry is counted in
// the summary's core_retries, so that a conflict Herald causes is seen, not hidden.
func (w inserter) commit(ctx context.Context, fn func(tx *sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := w.db.InTx(ctx, fn)
		if err == nil || !sqlstore.Conflict(err) || attempt == coreAttempts {
			return err
		}
		w.retries.Add(1)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 10 * time.Millisecond):
		}
	}
}

func (w inserter) event(id string, i int) (table string, payload, metadata []byte) {
	c := i % w.customers
	typ := w.mix.pick(i)
	account := fmt.Sprintf("62220203%08d", c)
	e := map[string]any{"event_id": id, "type": typ, "occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
		"customer_id": fmt.Sprintf("lg-cust-%05d", c)}
	switch typ {
	case notify.TypeTransactionPosted, notify.TypeTransactionDeclined:
		e["account_id"], e["currency"], e["direction"], e["counterparty"] = account, "CNY", "debit", "Load Test Merchant"
		e["amount"] = fmt.Sprintf("%d.%02d", 1+i%5000, i%100)
	case notify.TypeBalanceLow:
		e["account_id"], e["currency"] = account, "CNY"
		e["balance_after"] = fmt.Sprintf("%d.%02d", i%100, i%97)
	case notify.TypeOTPRequested:
		e["code"] = fmt.Sprintf("%06d", (i*7919)%1000000)
	}
	md := map[string]string{"event_type": typ}
	if e["account_id"] != nil {
		md["account_id"] = account
	}
	payload, _ = json.Marshal(e)
	metadata, _ = json.Marshal(md)
	table = "herald_events"
	if (&notify.Event{Type: typ}).Critical() {
		table = "herald_events_critical"
	}
	return table, payload, metadata
}

func (w inserter) commitOne(ctx context.Context, id string, i int) error {
	table, payload, md := w.event(id, i)
	err := w.commit(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, w.db.Rebind(`INSERT INTO `+table+` (uuid, payload, metadata) VALUES (?, ?, ?)`), id, string(payload), string(md))
		return err
	})
	if err != nil {
		return fmt.Errorf("the core's commit of event %s: %w", id, err)
	}
	return nil
}

// commitBatch writes n events in transactions of 500 (the backlog).
func (w inserter) commitBatch(ctx context.Context, prefix string, n int) error {
	for i := 0; i < n; i += 500 {
		k := min(500, n-i)
		byTable := map[string][]any{}
		var tables []string
		for j := 0; j < k; j++ {
			id := fmt.Sprintf("%s%08d", prefix, i+j)
			table, payload, md := w.event(id, i+j)
			if byTable[table] == nil {
				tables = append(tables, table)
			}
			byTable[table] = append(byTable[table], id, string(payload), string(md))
		}
		err := w.commit(ctx, func(tx *sql.Tx) error {
			for _, table := range tables {
				args := byTable[table]
				rows := strings.TrimSuffix(strings.Repeat("(?, ?, ?),", len(args)/3), ",")
				if _, err := tx.ExecContext(ctx, w.db.Rebind(`INSERT INTO `+table+` (uuid, payload, metadata) VALUES `+rows), args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("writing the backlog: %w", err)
		}
	}
	return nil
}

func customers(ctx context.Context, db *sqlstore.DB, n int) error {
	for i := 0; i < n; i++ {
		if _, err := db.Recipients().Put(ctx, notify.Recipient{ID: fmt.Sprintf("lg-cust-%05d", i), Contacts: notify.Contacts{
			Phone: notify.Phone(fmt.Sprintf("+86137%08d", i)), Email: notify.Email(fmt.Sprintf("lg%05d@example.com", i))}}); err != nil {
			return err
		}
	}
	return nil
}

// series counts, per second since start, events committed, SMS accepted, and SMS
// ended (accepted, or failed for good).
func series(ctx context.Context, db *sqlstore.DB, prefix string, start time.Time) ([]Point, error) {
	rows, err := db.R.QueryContext(ctx, db.Rebind(`SELECT occurred_at, sent_at, status, updated_at FROM herald_deliveries
		WHERE event_id LIKE ? AND channel = 'sms'`), prefix+"%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var pts []Point
	at := func(us int64) *Point {
		s := max(int(time.UnixMicro(us).Sub(start)/time.Second), 0)
		for len(pts) <= s {
			pts = append(pts, Point{Second: len(pts)})
		}
		return &pts[s]
	}
	for rows.Next() {
		var occ, updated int64
		var sent sql.NullInt64
		var status notify.Status
		if err := rows.Scan(&occ, &sent, &status, &updated); err != nil {
			return nil, err
		}
		at(occ).Committed++
		switch {
		case sent.Valid:
			at(sent.Int64).Sent++
			at(sent.Int64).Ended++
		case status.Terminal():
			at(updated).Ended++
		}
	}
	return pts, rows.Err()
}

func round(x float64, places int) float64 {
	p := math.Pow10(places)
	r := math.Round(x*p) / p
	if r == 0 {
		return 0 // not -0, which JSON prints as "-0" (a lag shrinking by 0.04 a second)
	}
	return r
}

// rssSampler records the largest resident set size of this process.
type rssSampler struct {
	stopc chan struct{}
	once  sync.Once
	max   atomic.Int64
}

func startRSS() *rssSampler {
	s := &rssSampler{stopc: make(chan struct{})}
	go func() {
		for {
			if kb := rssKB(); kb > s.max.Load() {
				s.max.Store(kb)
			}
			select {
			case <-s.stopc:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() float64 {
	s.once.Do(func() { close(s.stopc) })
	return float64(s.max.Load()) / 1024
}

func rssKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}
