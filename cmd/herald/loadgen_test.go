package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadgenBinary runs `herald loadgen` on SQLite with a backlog and checks the JSON
// summary and the HTML report. It checks the measurement works, not the speed.
func TestLoadgenBinary(t *testing.T) {
	bin := buildHerald(t)
	dir := t.TempDir()
	report := filepath.Join(dir, "report.html")
	cmd := exec.Command(bin, "loadgen", "--db", "sqlite://"+filepath.Join(dir, "lg.db"), "--events", "300", "--backlog", "200",
		"--writers", "4", "--customers", "50", "--json", "--report", report, "--warmup", "1ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, stderr.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	for _, k := range []string{"events_per_second", "deliveries_per_second", "latency_ms", "baseline", "ratio_events_to_insert_commit",
		"ratio_events_to_drain", "backlog_events_per_second", "ratio_backlog_to_drain", "rss_mb_max", "warmup_s"} {
		if _, ok := res[k]; !ok {
			t.Fatalf("summary lacks %s: %s", k, out)
		}
	}
	base := res["baseline"].(map[string]any)
	if res["events"].(float64) != 300 || res["deliveries"].(float64) != 900 || res["lost"].(float64) != 0 ||
		res["duplicates"].(float64) != 0 || base["insert_commit_per_second"].(float64) <= 0 || base["drain_rows_per_second"].(float64) <= 0 ||
		res["warmup_s"].(float64) != 0.001 || res["latency_ms"].(map[string]any)["p50"].(float64) <= 0 {
		t.Fatalf("summary: %s", out)
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
	cmd := exec.Command(bin, "loadgen", "--db", "sqlite://"+db, "--events", "400", "--no-baseline",
		"--writers", "4", "--customers", "50", "--json", "--mix", "transaction.posted=2,otp.requested=1,security.login=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, stderr.String())
	}
	var res struct {
		Events, Deliveries, Lost, Duplicates int
		Mix                                  map[string]float64
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if res.Events != 400 || res.Lost != 0 || res.Duplicates != 0 || res.Mix["otp.requested"] != 25 {
		t.Fatalf("summary: %s", out)
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
