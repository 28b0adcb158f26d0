package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// TestLoadgenBinary runs `herald loadgen` on SQLite with a backlog and checks the JSON
// summary and the HTML report. It checks the measurement works, not the speed.
func TestLoadgenBinary(t *testing.T) {
	bin := buildHerald(t)
	dir := t.TempDir()
	report := filepath.Join(dir, "report.html")
	var res map[string]any
	out := loadgenJSON(t, bin, &res, "--db", "sqlite://"+filepath.Join(dir, "lg.db"), "--events", "300", "--backlog", "200",
		"--writers", "4", "--customers", "50", "--report", report, "--warmup", "1ms")
	t.Logf("%s", out)
	for _, k := range []string{"events_per_second", "deliveries_per_second", "latency_ms", "baseline", "ratio_events_to_insert_commit",
		"ratio_events_to_drain", "backlog_events_per_second", "ratio_backlog_to_drain", "rss_mb_max", "warmup_s", "core_retries"} {
		if _, ok := res[k]; !ok {
			t.Fatalf("summary lacks %s: %s", k, out)
		}
	}
	// 300 events are committed in well under the five seconds a verdict needs: no
	// verdict, and no slope that would read as a flat lag.
	lag, _ := res["lag"].(map[string]any)
	if _, judged := res["keeps_up"]; judged || lag == nil {
		t.Fatalf("a burst too short to judge: %s", out)
	}
	if _, ok := lag["growth_per_second"]; ok {
		t.Fatalf("lag.growth_per_second of a run too short to measure it: %s", out)
	}
	base := res["baseline"].(map[string]any)
	if res["transport"] != "sql" {
		t.Fatalf("transport: %s", out)
	}
	if res["events"].(float64) != 300 || res["deliveries"].(float64) != 900 || res["lost"].(float64) != 0 ||
		res["duplicates"].(float64) != 0 || base["insert_commit_per_second"].(float64) <= 0 || base["drain_rows_per_second"].(float64) <= 0 ||
		res["warmup_s"].(float64) != 0.001 || res["latency_ms"].(map[string]any)["p50"].(float64) <= 0 {
		t.Fatalf("summary: %s", out)
	}
	// By channel, and the first hop, which every delivery passes before its send.
	byCh, _ := res["latency_ms_by_channel"].(map[string]any)
	rec, _ := res["record_latency_ms"].(map[string]any)
	if len(byCh) != 3 || rec == nil || rec["p50"].(float64) <= 0 {
		t.Fatalf("latency by channel and to the fan-out's record: %s", out)
	}
	// An event's SMS and email are sent after the fan-out's commit, its in-app message
	// in it.
	inapp, _ := byCh["inapp"].(map[string]any)
	for _, ch := range []string{"sms", "email"} {
		l, _ := byCh[ch].(map[string]any)
		if l == nil || inapp == nil || l["p50"].(float64) < rec["p50"].(float64) ||
			l["p50"].(float64) < inapp["p50"].(float64) || l["max"].(float64) < inapp["max"].(float64) {
			t.Fatalf("%s latency must include the hop to the fan-out's record and end after the in-app message: %s", ch, out)
		}
	}
	// Where the processor time went, in the run and in the catch-up (Linux).
	if runtime.GOOS == "linux" {
		for _, k := range []string{"cpu", "backlog_cpu"} {
			c, _ := res[k].(map[string]any)
			if c == nil || c["process_seconds"].(float64) <= 0 || c["others_seconds"].(float64) < 0 ||
				c["busy_share"].(float64) <= 0 || c["busy_share"].(float64) > 1 || c["cores"].(float64) < 1 {
				t.Fatalf("%s: %s", k, out)
			}
		}
	}
	html, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), "<svg") || strings.Contains(string(html), "<script") || strings.Contains(string(html), "http://") {
		t.Fatal("the report must be self-contained SVG without scripts or links")
	}
}

// TestLoadgenMix: with a mix of event types, critical ones go through the critical
// lane's outbox and every event is delivered on the channels its type uses.
func TestLoadgenMix(t *testing.T) {
	bin := buildHerald(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "mix.db")
	var res struct {
		Events, Deliveries, Lost, Duplicates int
		Mix                                  map[string]float64
	}
	prof := filepath.Join(dir, "cpu.prof")
	out := loadgenJSON(t, bin, &res, "--db", "sqlite://"+db, "--events", "400", "--no-baseline",
		"--writers", "4", "--customers", "50", "--mix", "transaction.posted=2,otp.requested=1,security.login=1", "--cpuprofile", prof)
	if res.Events != 400 || res.Lost != 0 || res.Duplicates != 0 || res.Mix["otp.requested"] != 25 {
		t.Fatalf("summary: %s", out)
	}
	// A CPU profile is a gzipped protocol buffer: complete only once the profiler stopped.
	f, err := os.Open(prof)
	if err != nil {
		t.Fatalf("--cpuprofile: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("--cpuprofile wrote no profile: %v", err)
	}
	if n, err := io.Copy(io.Discard, zr); err != nil || n == 0 {
		t.Fatalf("--cpuprofile: %d bytes, %v", n, err)
	}
	// Three deliveries per transaction alert, one per OTP (SMS), two per login (SMS and
	// email; the customers have no push token): between the all-OTP and all-alert
	// extremes, and not all alerts.
	if res.Deliveries <= 400 || res.Deliveries >= 1200 {
		t.Fatalf("%d deliveries for a mixed run of 400 events: %s", res.Deliveries, out)
	}
	bad := exec.Command(bin, "loadgen", "--db", "sqlite://"+filepath.Join(dir, "bad.db"), "--events", "1", "--mix", "card.swallowed=1")
	if msg, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(msg), "unknown event type") {
		t.Fatalf("an unknown type in --mix: %v\n%s", err, msg)
	}
	bad = exec.Command(bin, "loadgen", "--db", "sqlite://"+filepath.Join(dir, "bad.db"), "--duration", "2s", "--warmup", "2s")
	if msg, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(msg), "--warmup 2s must be at least 0 and shorter than --duration 2s") {
		t.Fatalf("a warm-up as long as the run: %v\n%s", err, msg)
	}
}

// TestLoadgenKafka: loadgen measures Herald in Kafka mode against the cluster that
// benchmarks/kfake runs in its own process: every event is delivered, and the
// deliveries travelled over Kafka (the SQL topic of a channel stays empty).
func TestLoadgenKafka(t *testing.T) {
	bin := buildHerald(t)
	dir := t.TempDir()
	kf := filepath.Join(dir, "kfake")
	if out, err := exec.Command("go", "build", "-o", kf, "../../benchmarks/kfake").CombinedOutput(); err != nil {
		t.Fatalf("build kfake: %v\n%s", err, out)
	}
	// Two brokers: the topics' partitions spread over both, as on a real cluster.
	cluster := exec.Command(kf, "-addr", "127.0.0.1:0", "-brokers", "2")
	stdout, err := cluster.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Process.Kill(); _ = cluster.Wait() })
	// One address per broker; a cluster that prints fewer is a failure, not a hang.
	printed := make(chan string, 2)
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			printed <- strings.TrimSpace(lines.Text())
		}
		close(printed)
	}()
	var brokers []string
	for len(brokers) < 2 {
		select {
		case a, ok := <-printed:
			if !ok {
				t.Fatalf("kfake printed %d addresses, want 2", len(brokers))
			}
			brokers = append(brokers, a)
		case <-time.After(30 * time.Second):
			t.Fatalf("kfake printed %d addresses in 30 s, want 2", len(brokers))
		}
	}
	url := "sqlite://" + filepath.Join(dir, "kafka.db")
	var res struct {
		Events, Deliveries, Lost, Duplicates int
		Transport                            string
	}
	out := loadgenJSON(t, bin, &res, "--db", url, "--kafka-brokers", strings.Join(brokers, ","), "--events", "300", "--no-baseline",
		"--writers", "4", "--customers", "50")
	if res.Events != 300 || res.Deliveries != 900 || res.Lost != 0 || res.Duplicates != 0 || res.Transport != "kafka" {
		t.Fatalf("summary: %s", out)
	}
	db, err := sqlstore.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sent int
	if err := db.R.QueryRow(`SELECT COUNT(*) FROM herald_deliveries WHERE channel = 'sms' AND status = 'sent'`).Scan(&sent); err != nil {
		t.Fatal(err)
	}
	var onSQL int
	err = db.R.QueryRow(`SELECT COUNT(*) FROM ` + sqlstore.TopicTable(sqlstore.DeliveryTopic("sms", notify.LaneNormal))).Scan(&onSQL)
	if err != nil && !strings.Contains(err.Error(), "no such table") {
		t.Fatal(err)
	}
	if sent != 300 || onSQL != 0 {
		t.Fatalf("%d SMS deliveries sent, %d SMS messages on the SQL topic; want 300 sent, none on SQL", sent, onSQL)
	}
}

// loadgenJSON runs `herald loadgen ARGS --json`, decodes its one JSON object into res
// and returns it as printed.
func loadgenJSON(t *testing.T, bin string, res any, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, append(append([]string{"loadgen"}, args...), "--json")...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(out, res); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	return out
}

// TestLoadgenKeepsUp: at a rate Herald handles, the summary and the report say it kept
// the core's pace, also when some sends fail for good; with a provider that takes 100 ms a send, one at a time, it falls
// behind and they say so.
func TestLoadgenKeepsUp(t *testing.T) {
	bin := buildHerald(t)
	for _, tc := range []struct {
		name  string
		keeps bool
		flags []string
	}{
		{"keeps up", true, nil},
		// An SMS that failed for good is handled: it does not count as lag.
		{"keeps up while a tenth of SMS fail for good", true, []string{"--sandbox-permanent-fail-rate", "sms=0.1"}},
		{"falls behind", false, []string{"--concurrency", "1", "--sandbox-latency", "sms=100ms", "--timeout", "1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			report := filepath.Join(dir, "report.html")
			var res struct {
				Committed float64 `json:"committed_per_second"`
				KeepsUp   *bool   `json:"keeps_up"`
				Lag       *struct {
					Max             int      `json:"max"`
					GrowthPerSecond *float64 `json:"growth_per_second"`
				} `json:"lag"`
			}
			out := loadgenJSON(t, bin, &res, append([]string{"--db", "sqlite://" + filepath.Join(dir, "lg.db"),
				"--rate", "40", "--duration", "7s", "--warmup", "1s", "--no-baseline", "--customers", "20", "--report", report}, tc.flags...)...)
			// 40 a second, and the limiter's first burst of one event per writer.
			if res.Committed < 30 || res.Committed > 45 {
				t.Fatalf("committed_per_second %.1f at --rate 40: %s", res.Committed, out)
			}
			if res.KeepsUp == nil || res.Lag == nil || res.Lag.GrowthPerSecond == nil || *res.KeepsUp != tc.keeps {
				t.Fatalf("keeps_up and lag.growth_per_second: want %v: %s", tc.keeps, out)
			}
			growth := *res.Lag.GrowthPerSecond
			// One SMS at a time, 100 ms each: ten a second against the core's forty.
			if !tc.keeps && growth < 20 {
				t.Fatalf("falling behind by ~30 events a second, the lag grew %.1f: %s", growth, out)
			}
			html, err := os.ReadFile(report)
			if err != nil {
				t.Fatal(err)
			}
			// The lag plot's scale is the lag's largest value, as in the summary.
			if !strings.Contains(string(html), "<h2>Lag over time</h2>") ||
				!strings.Contains(string(html), fmt.Sprintf(`font-size="11">%d</text>`, max(res.Lag.Max, 1))) {
				t.Fatalf("the report has no lag plot up to %d events", res.Lag.Max)
			}
			want := map[bool]string{true: "Herald kept the core&#39;s pace", false: "Herald fell behind the core"}[tc.keeps]
			if !strings.Contains(string(html), want) {
				t.Fatalf("the report does not say %q", want)
			}
			if grew := fmt.Sprintf("the lag grew %v events a second", growth); !strings.Contains(string(html), grew) {
				t.Fatalf("the report does not say %q", grew)
			}
		})
	}
}

// TestRunningHeraldEnded: with --target, loadgen follows the run through the running
// Herald's /metrics, and an unreadable /metrics is an error (loadgen then asks the
// database instead).
func TestRunningHeraldEnded(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		fmt.Fprintln(w, `herald_deliveries_total{channel="sms",status="sent"} 7`)
		fmt.Fprintln(w, `herald_deliveries_total{channel="email",status="failed"} 2`)
		fmt.Fprintln(w, `herald_deliveries_total{channel="email",status="retrying"} 9`)
	}))
	defer srv.Close()
	n, err := (&running{url: srv.URL}).Ended(context.Background())
	if err != nil || n != 9 {
		t.Fatalf("ended: %d, %v; want 9", n, err)
	}
	status = http.StatusInternalServerError
	if _, err := (&running{url: srv.URL}).Ended(context.Background()); err == nil {
		t.Fatal("a failing /metrics must be an error")
	}
}
