package service_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/demo"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/service"
)

// reliable is the test config with quick requeues and breakers.
func reliable(url string) config.Config {
	c := testConfig(url)
	c.RequeueInitial, c.RequeueMax, c.BreakerOpenFor = 200*time.Millisecond, 2*time.Second, 2*time.Second
	return c
}

func runDemo(t *testing.T, cfg config.Config, events int) demo.Summary {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testLogWriter(), &slog.HandlerOptions{Level: slog.LevelError}))
	svc, err := service.Open(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	sum, err := demo.Run(context.Background(), svc, demo.Config{Events: events, Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// A 30% transient failure rate on every sandbox channel: every delivery still ends
// sent, none twice.
func TestTransientFailuresAreRetriedToSent(t *testing.T) {
	for _, b := range []struct {
		name         string
		url          func(t *testing.T) string
		redis, kafka bool
	}{
		{"sqlite", backends[0].url, false, false},
		{"postgres", func(t *testing.T) string { return testdb.Postgres(t) }, false, false},
		{"sqlite+redis", backends[0].url, true, false},
		{"sqlite+kafka", backends[0].url, false, true},
	} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := reliable(b.url(t))
			cfg.SandboxFailRate = "0.3"
			if b.redis {
				cfg.Redis = "redis://127.0.0.1:6379/0"
			}
			if b.kafka { // requeued messages go back to Kafka topics
				cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(cluster.Close)
				cfg.KafkaBrokers = cluster.ListenAddrs()
			}
			sum := runDemo(t, cfg, 300)
			t.Logf("30%% transient failures: %d deliveries %v, retries %d, requeued %d, duplicates %d, %.1fs, latency p50 %.0f ms p99 %.0f ms",
				sum.Deliveries.Total, sum.Deliveries.ByStatus, sum.Retries, sum.Requeued, sum.Duplicates,
				sum.ElapsedSeconds, sum.LatencyMs.P50, sum.LatencyMs.P99)
			if sum.Deliveries.ByStatus["sent"] != sum.Deliveries.Total || sum.Deliveries.Total < 800 {
				t.Fatalf("not every delivery sent: %v", sum.Deliveries.ByStatus)
			}
			if sum.Duplicates != 0 {
				t.Fatalf("%d duplicates", sum.Duplicates)
			}
			if sum.Retries < 100 {
				t.Fatalf("only %d retries at a 30%% failure rate: faults not injected?", sum.Retries)
			}
		})
	}
}

// Permanent rejections fail the delivery and queue the recipient's fallback channel
// (demo customers fall back from SMS to WeChat).
func TestPermanentFailuresFallBack(t *testing.T) {
	t.Parallel()
	cfg := reliable(backends[0].url(t))
	cfg.SandboxPermanentFailRate = "sms=0.2"
	sum := runDemo(t, cfg, 200)
	t.Logf("20%% permanent SMS failures: %v, failed %d, fallbacks %d", sum.Deliveries.ByStatus, sum.Failed, sum.Fallbacks)
	if sum.Failed == 0 || sum.Fallbacks != sum.Failed {
		t.Fatalf("failed %d, fallbacks %d: every failed SMS should fall back to WeChat", sum.Failed, sum.Fallbacks)
	}
	if sum.Deliveries.ByChannel["wechat"] != sum.Fallbacks || sum.Deliveries.ByStatus["sent"] != sum.Deliveries.Total-sum.Failed {
		t.Fatalf("fallbacks not delivered: %+v", sum.Deliveries)
	}
}

// A 30-second SMS outage: the SMS breaker opens, email keeps its latency, goroutines
// and memory stay bounded, and after recovery every SMS is delivered. Not parallel:
// it counts the process's goroutines.
func TestProviderOutage(t *testing.T) {
	const outageStart, outage = 2 * time.Second, 30 * time.Second
	cfg := reliable(backends[0].url(t))
	cfg.Channels = []string{"sms", "email", "inapp"}
	cfg.SandboxOutages = []string{fmt.Sprintf("sms:%s+%s", outageStart, outage)}
	// Each message in flight has two goroutines (the subscriber's and the router's), and
	// every subscribed topic may have Concurrency in flight at once: when the database
	// stalls, the fan-out, email and in-app topics fill up too, not only SMS. A small
	// in-flight limit keeps the bound below (about 120 over the start) well under the
	// ~300 SMS messages that fail during the outage, so a goroutine kept per failing or
	// parked message still breaks it.
	cfg.Concurrency = 4
	began := time.Now()
	svc := startWith(t, cfg)
	baseGoroutines := runtime.NumGoroutine()

	var maxGoroutines atomic.Int64
	var maxHeap atomic.Uint64
	var atMax bytes.Buffer // the goroutines' stacks when their count peaked
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if g := int64(runtime.NumGoroutine()); g > maxGoroutines.Load() {
				// Count the goroutines the profile saw, not the first reading: a burst
				// that lives microseconds (database/sql and the SQLite driver start a
				// goroutine per call with a context) is not growth, and once read 215
				// where the profile taken right after held 73. Goroutines kept per
				// failing or parked message are in both.
				var buf bytes.Buffer
				_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
				total := g // the first reading, should the profile's header ever change
				_, _ = fmt.Sscanf(buf.String(), "goroutine profile: total %d", &total)
				total -= int64(transientGoroutines(buf.String()))
				if total > maxGoroutines.Load() {
					maxGoroutines.Store(total)
					atMax = buf
				}
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > maxHeap.Load() {
				maxHeap.Store(ms.HeapInuse)
			}
		}
	}()
	// 10 events a second until the outage has been over for 3 seconds.
	n := 0
	for time.Since(began) < outageStart+outage+3*time.Second {
		e := posted(fmt.Sprintf("outage-%04d", n), "", "12.00")
		e.Contact = &notify.Contacts{Phone: notify.Phone(fmt.Sprintf("+86139%08d", n)), Email: notify.Email(fmt.Sprintf("o%d@example.com", n))}
		commit(t, svc, false, e)
		n++
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	<-sampled
	recovered := began.Add(outageStart + outage)
	waitUntil(t, 60*time.Second, func() bool {
		sum, err := svc.DB.Deliveries().Summarize(context.Background(), "outage-", false)
		return err == nil && sum.ByStatus[notify.StatusSent] == 2*n
	})
	allSent := time.Since(recovered)

	var buf bytes.Buffer
	svc.Metrics.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), `herald_breaker_transitions_total{provider="sms",to="open"}`) {
		t.Fatal("the SMS breaker never opened")
	}
	if strings.Contains(buf.String(), `herald_breaker_transitions_total{provider="email"`) {
		t.Fatal("the email breaker moved: other providers must be unaffected")
	}
	lat := func(channel string, from, to time.Time) []float64 {
		rows, err := svc.DB.R.Query(svc.DB.Rebind(`SELECT sent_at - occurred_at FROM herald_deliveries
			WHERE event_id LIKE 'outage-%' AND channel = ? AND occurred_at >= ? AND occurred_at < ?`),
			channel, from.UnixMicro(), to.UnixMicro())
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []float64
		for rows.Next() {
			var us int64
			if err := rows.Scan(&us); err != nil {
				t.Fatal(err)
			}
			out = append(out, float64(us)/1000)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		sort.Float64s(out)
		return out
	}
	p := func(xs []float64, q float64) float64 { return xs[min(len(xs)-1, int(q*float64(len(xs))))] }
	before := lat("email", began, began.Add(outageStart))
	during := lat("email", began.Add(outageStart+time.Second), recovered)
	smsDuring := lat("sms", began.Add(outageStart+time.Second), recovered)
	t.Logf("email latency before the outage p50 %.0f ms p99 %.0f ms (%d), during p50 %.0f ms p99 %.0f ms (%d); "+
		"SMS during the outage delivered p50 %.1f s after their event; every SMS sent %.1f s after recovery; "+
		"goroutines %d at start, %d at most; heap in use at most %d MB",
		p(before, .5), p(before, .99), len(before), p(during, .5), p(during, .99), len(during),
		p(smsDuring, .5)/1000, allSent.Seconds(), baseGoroutines, maxGoroutines.Load(), maxHeap.Load()>>20)
	if len(during) < 200 || p(during, .99) > 1000 {
		t.Fatalf("email suffered from the SMS outage: p99 %.0f ms over %d deliveries", p(during, .99), len(during))
	}
	// 50 of slack (the database drivers' per-statement goroutines among them) plus the
	// in-flight messages of every subscribed topic.
	handlers := int64(len(svc.Router.Handlers()))
	if limit := int64(baseGoroutines) + 50 + 2*handlers*int64(cfg.Concurrency); maxGoroutines.Load() > limit {
		t.Fatalf("goroutines grew from %d to %d during the outage (limit %d for %d handlers); at the peak:\n%s",
			baseGoroutines, maxGoroutines.Load(), limit, handlers, atMax.String())
	}
	if maxHeap.Load() > 256<<20 {
		t.Fatalf("heap grew to %d MB during the outage", maxHeap.Load()>>20)
	}
}

// A rate limit of 20 sends per second on SMS holds within ±10% over 10 seconds while
// a backlog waits. Not parallel: the limit is a ceiling, and the pipeline must have
// the headroom to reach it even under the race detector.
func TestRateLimitHolds(t *testing.T) {
	const rate, window = 20, 10 * time.Second
	cfg := reliable(backends[0].url(t))
	cfg.Channels, cfg.RateLimits = []string{"sms"}, []string{fmt.Sprintf("sms=%d", rate)}
	svc := startWith(t, cfg)
	const events = 280 // 14 s of work at the limit
	batch := make([]notify.Event, 0, events)
	for i := 0; i < events; i++ {
		e := posted(fmt.Sprintf("rate-%04d", i), "", "1.00")
		e.Contact = &notify.Contacts{Phone: notify.Phone(fmt.Sprintf("+86139%08d", i))}
		batch = append(batch, e)
	}
	commit(t, svc, false, batch...)
	waitUntil(t, 40*time.Second, func() bool {
		var n int
		err := svc.DB.R.QueryRow(`SELECT COUNT(*) FROM herald_sandbox_sends`).Scan(&n)
		return err == nil && n >= int(window/time.Second)*rate+3*rate
	})
	var first int64
	if err := svc.DB.R.QueryRow(`SELECT MIN(accepted_at) FROM herald_sandbox_sends`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	from := first + time.Second.Microseconds() // past the start-up
	var sent int
	if err := svc.DB.R.QueryRow(svc.DB.Rebind(`SELECT COUNT(*) FROM herald_sandbox_sends WHERE accepted_at >= ? AND accepted_at < ?`),
		from, from+window.Microseconds()).Scan(&sent); err != nil {
		t.Fatal(err)
	}
	got := float64(sent) / window.Seconds()
	t.Logf("configured %d/s, measured %.1f/s over %s (%d sends)", rate, got, window, sent)
	if got < rate*0.9 || got > rate*1.1 {
		t.Fatalf("rate %.1f/s outside %d/s ±10%%", got, rate)
	}
}

// A backlog of normal traffic does not delay a one-time password: it has its own
// outbox table, topics and handlers.
func TestCriticalLaneBypassesBacklog(t *testing.T) {
	t.Parallel()
	cfg := reliable(backends[0].url(t))
	// A provider that takes one message at a time (20 ms each), so the normal lane
	// backs up.
	cfg.Channels, cfg.SandboxLatency, cfg.Concurrency = []string{"sms"}, "20ms", 1
	svc := startWith(t, cfg)
	batch := make([]notify.Event, 0, 500)
	for i := 0; i < 500; i++ { // 10 s of SMS at 20 ms each
		e := posted(fmt.Sprintf("bulk-%04d", i), "", "1.00")
		e.Contact = &notify.Contacts{Phone: notify.Phone(fmt.Sprintf("+86139%08d", i))}
		batch = append(batch, e)
	}
	commit(t, svc, false, batch...)
	time.Sleep(500 * time.Millisecond)
	otp := notify.Event{ID: "otp-0001", Type: notify.TypeOTPRequested, OccurredAt: time.Now().UTC(),
		Contact: &notify.Contacts{Phone: "+8613900000001"}, Extra: map[string]any{"code": "123456"}}
	committed := time.Now()
	commit(t, svc, false, otp)
	var took time.Duration
	waitUntil(t, 10*time.Second, func() bool {
		ds, err := svc.DB.Deliveries().ByEvent(context.Background(), "otp-0001")
		if err == nil && len(ds) == 1 && ds[0].Status == notify.StatusSent {
			took = time.Since(committed)
			return true
		}
		return false
	})
	backlog, err := svc.DB.Deliveries().Summarize(context.Background(), "bulk-", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("OTP sent %s after commit with %d normal SMS still waiting", took.Round(time.Millisecond),
		500-backlog.ByStatus[notify.StatusSent])
	if took > 2*time.Second {
		t.Fatalf("OTP took %s behind the backlog", took)
	}
	if backlog.ByStatus[notify.StatusSent] > 400 {
		t.Fatalf("backlog drained (%d sent) before the OTP: the test proved nothing", backlog.ByStatus[notify.StatusSent])
	}
}

func waitUntil(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// transientGoroutines counts, in a goroutine profile (debug=1), the goroutines that
// live for one database call: those not started yet (no frame but goexit), and the
// SQLite driver's watcher of a call's context (modernc.org/sqlite's interruptOnDone,
// which returns when the call does). On a loaded machine a burst of them waits to be
// scheduled: a CI run once saw 97 watchers and 43 unstarted goroutines in one profile.
// A goroutine kept per failing or parked message is blocked in a frame of its own and
// is still counted.
func transientGoroutines(profile string) int {
	if first, rest, ok := strings.Cut(profile, "\n"); ok && strings.HasPrefix(first, "goroutine profile:") {
		profile = rest
	}
	n := 0
	for _, rec := range strings.Split(profile, "\n\n") {
		head, frames, _ := strings.Cut(strings.TrimSpace(rec), "\n")
		var count int
		if _, err := fmt.Sscanf(head, "%d @", &count); err != nil {
			continue
		}
		if strings.TrimSpace(frames) == "" || strings.Contains(frames, "modernc.org/sqlite.interruptOnDone") {
			n += count
		}
	}
	return n
}

func TestTransientGoroutines(t *testing.T) {
	profile := "goroutine profile: total 219\n" +
		"97 @ 0xd77401 0x498141\n#\t0xd77400\tmodernc.org/sqlite.interruptOnDone.func1+0x0\t/x/sqlite.go:113\n\n" +
		"43 @ 0x498141\n\n" +
		"8 @ 0x49044e 0x41ea6e 0x498141\n#\t0x96dce4\tgithub.com/ThreeDotsLabs/watermill/message.(*handler).run+0x2b6\t/x/router.go:663\n\n" +
		"5 @ 0x49044e 0x498141\n#\t0x1\tgithub.com/heraldhq/herald/handlers.(*Deliver).Handle+0x10\t/x/deliver.go:1\n"
	if n := transientGoroutines(profile); n != 140 {
		t.Fatalf("transient goroutines: %d, want 140 (97 SQLite call watchers + 43 not started; the handlers' 13 count)", n)
	}
}
