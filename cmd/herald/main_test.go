package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/notify"
)

// TestConfigPrecedence: flags over HERALD_* env over the YAML file over defaults.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(file, []byte("addr: 127.0.0.1:9000\nbank-name: File Bank\nbatch-size: 7\nmax-retries: 9\napi-keys: [key-one-123, key-two-456]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_BANK_NAME", "Env Bank")
	t.Setenv("HERALD_BATCH_SIZE", "8")
	var c cli
	parser, err := kong.New(&c, kong.Configuration(yamlLoader))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"serve", "--config", file, "--batch-size", "9"}); err != nil {
		t.Fatal(err)
	}
	got := c.Serve.Config
	if got.Addr != "127.0.0.1:9000" {
		t.Errorf("addr = %q, want the file's", got.Addr)
	}
	if got.Bank != "Env Bank" {
		t.Errorf("bank = %q, want the environment's", got.Bank)
	}
	if got.BatchSize != 9 {
		t.Errorf("batch size = %d, want the flag's", got.BatchSize)
	}
	if got.MaxRetries != 9 {
		t.Errorf("max retries = %d, want the file's", got.MaxRetries)
	}
	if strings.Join(got.APIKeys, " ") != "key-one-123 key-two-456" {
		t.Errorf("api keys = %q, want the file's list", got.APIKeys)
	}
	if got.DB != "sqlite://herald.db" {
		t.Errorf("db = %q, want the default", got.DB)
	}
}

func TestConfigFileUnknownKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(file, []byte("bank_name: Typo Bank\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var c cli
	parser, err := kong.New(&c, kong.Configuration(yamlLoader))
	if err != nil {
		t.Fatal(err)
	}
	_, err = parser.Parse([]string{"serve", "--config", file})
	if err == nil || !strings.Contains(err.Error(), "unknown keys bank_name") {
		t.Fatalf("typo in config file not reported: %v", err)
	}
}

// TestDemoBinary builds herald and runs the demo as a user would, on every backend,
// with 4 concurrent core writers: every committed event must reach every channel.
func TestDemoBinary(t *testing.T) {
	dir := t.TempDir()
	bin := buildHerald(t)
	for _, b := range []struct {
		name   string
		url    func(t *testing.T) string
		events int
	}{
		{"sqlite", func(*testing.T) string { return "sqlite://" + filepath.Join(dir, "demo.db") }, 300},
		{"postgres", func(t *testing.T) string { return testdb.Postgres(t) }, 1000},
		{"mysql", func(t *testing.T) string { return testdb.MySQL(t) }, 1000},
	} {
		t.Run(b.name, func(t *testing.T) { runDemo(t, bin, b.url(t), b.events) })
	}
	// Kafka mode against an in-process cluster speaking the Kafka protocol.
	t.Run("postgres+Kafka", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		runDemo(t, bin, testdb.Postgres(t), 1000, "--kafka-brokers", strings.Join(c.ListenAddrs(), ","))
	})
}

func runDemo(t *testing.T, bin, url string, events int, extra ...string) {
	args := append([]string{"demo", "--events", strconv.Itoa(events), "--json", "--timeout", "2m", "--db", url}, extra...)
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, stderr.String())
	}
	var sum struct {
		Events     int `json:"events"`
		Deliveries struct {
			Total     int            `json:"total"`
			ByStatus  map[string]int `json:"by_status"`
			ByChannel map[string]int `json:"by_channel"`
		} `json:"deliveries"`
		Duplicates      int     `json:"duplicates"`
		ElapsedSeconds  float64 `json:"elapsed_seconds"`
		EventsPerSecond float64 `json:"events_per_second"`
		LatencyMs       struct {
			P50, P95, P99 float64
		} `json:"latency_ms"`
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	dec.DisallowUnknownFields()
	if err := json.Unmarshal(out, &sum); err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
	}
	if sum.Events != events || sum.Deliveries.Total < 2*events || sum.Deliveries.ByStatus["sent"] != sum.Deliveries.Total {
		t.Fatalf("not every delivery sent: %s", out)
	}
	if sum.Duplicates != 0 {
		t.Fatalf("duplicates: %s", out)
	}
	if sum.EventsPerSecond <= 0 || sum.LatencyMs.P50 <= 0 || sum.LatencyMs.P99 < sum.LatencyMs.P50 {
		t.Fatalf("implausible figures: %s", out)
	}
	for _, ch := range []string{"sms", "email", "inapp"} {
		if sum.Deliveries.ByChannel[ch] == 0 {
			t.Errorf("no %s deliveries: %s", ch, out)
		}
	}
}

func TestInvalidConfigIsRefusedClearly(t *testing.T) {
	bin := buildHerald(t)
	cmd := exec.Command(bin, "serve", "--db", "oracle://x", "--addr", "0.0.0.0:8080", "--channels", "sms,fax", "--db-committers", "99", "--retain-consumed=-1m", "--retain-records=1h")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("serve accepted an invalid configuration")
	}
	for _, want := range []string{"--db (HERALD_DB_URL)", "unsupported scheme", "--api-keys (HERALD_API_KEYS)", `unknown channel "fax"`,
		"--db-committers (HERALD_DB_COMMITTERS)", "--retain-consumed (HERALD_RETAIN_CONSUMED)", "--retain-records (HERALD_RETAIN_RECORDS)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error output lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(bin, "serve", "--db", "sqlite://x.db", "--api-keys", "k", "--retain-records=2160h", "--retain-consumed=0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--retain-consumed (HERALD_RETAIN_CONSUMED)") || !strings.Contains(string(out), "not longer than retain-records") {
		t.Errorf("records pruned while consumed rows are kept: %v\n%s", err, out)
	}
}

func TestPoisonCommands(t *testing.T) {
	dir := t.TempDir()
	bin := buildHerald(t)
	url := "sqlite://" + filepath.Join(dir, "p.db")
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append(args, "--db", url)...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("migrate"); err != nil {
		t.Fatalf("migrate: %v %s", err, out)
	}
	db, err := sqlstore.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Poison().Add(context.Background(), sqlstore.PoisonEntry{MessageUUID: "evt-9", Topic: "events", Handler: "fanout",
		Reason: "decoding event: unexpected end of JSON input", Payload: []byte(`{"event_id":`)})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err := run("poison", "list")
	if err != nil || !strings.Contains(out, "evt-9") || !strings.Contains(out, "unexpected end of JSON input") {
		t.Fatalf("poison list: %v\n%s", err, out)
	}
	id := strings.Fields(out)[0]
	if out, err := run("poison", "replay", id); err != nil || !strings.Contains(out, "replayed "+id+" to events") {
		t.Fatalf("poison replay: %v\n%s", err, out)
	}
	if out, err := run("poison", "replay", id); err == nil || !strings.Contains(out, "replaying "+id+": not found") {
		t.Fatalf("replaying twice must fail clearly: %v\n%s", err, out)
	}
	if out, _ := run("poison", "list"); strings.Contains(out, "evt-9") {
		t.Fatalf("replayed entry still listed:\n%s", out)
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildHerald builds the herald binary once per test run.
func buildHerald(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "herald")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// startServe starts `herald serve` on sms, email and in-app with a 1 s send timeout
// (so a killed instance's leases run out quickly), logging to name.log; the process is
// killed when the test ends.
func startServe(t *testing.T, bin, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0", "--channels", "sms,email,inapp",
		"--log-format", "json", "--log-level", "warn", "--send-timeout", "1s"}, args...)...)
	log, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// putCustomers stores n customers c0..c(n-1) with a phone and an email.
// migratedPostgres returns a fresh PostgreSQL database (closed at the end of the test)
// migrated for sms, email and inapp, and its URL.
func migratedPostgres(t *testing.T) (*sqlstore.DB, string) {
	t.Helper()
	return migrated(t, testdb.Postgres(t))
}

func migratedMySQL(t *testing.T) (*sqlstore.DB, string) {
	t.Helper()
	return migrated(t, testdb.MySQL(t))
}

func migratedSQLite(t *testing.T) (*sqlstore.DB, string) {
	t.Helper()
	return migrated(t, "sqlite://"+filepath.Join(t.TempDir(), "herald.db"))
}

func migrated(t *testing.T, url string) (*sqlstore.DB, string) {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(context.Background(), []string{"sms", "email", "inapp"}); err != nil {
		t.Fatal(err)
	}
	return db, url
}

func putCustomers(t *testing.T, db *sqlstore.DB, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := db.Recipients().Put(context.Background(), notify.Recipient{ID: fmt.Sprintf("c%d", i), Contacts: notify.Contacts{
			Phone: notify.Phone(fmt.Sprintf("+861390014%04d", i)), Email: notify.Email(fmt.Sprintf("c%d@example.com", i))}}); err != nil {
			t.Fatal(err)
		}
	}
}
