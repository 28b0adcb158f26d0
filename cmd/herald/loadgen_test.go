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
		"--writers", "4", "--customers", "50", "--json", "--report", report)
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
		"ratio_events_to_drain", "backlog_events_per_second", "ratio_backlog_to_drain", "rss_mb_max"} {
		if _, ok := res[k]; !ok {
			t.Fatalf("summary lacks %s: %s", k, out)
		}
	}
	base := res["baseline"].(map[string]any)
	if res["events"].(float64) != 300 || res["deliveries"].(float64) != 900 || res["lost"].(float64) != 0 ||
		res["duplicates"].(float64) != 0 || base["insert_commit_per_second"].(float64) <= 0 || base["drain_rows_per_second"].(float64) <= 0 {
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
