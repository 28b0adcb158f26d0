package router_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/adapters/kafka"
	"github.com/heraldhq/herald/adapters/sandbox"
	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/handlers"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/router"
	"github.com/heraldhq/herald/templates"
)

// TestNewClosesWhatItOpenedOnError: a configuration error found after the Kafka client
// is connected (here a lease shorter than the send timeout) must not leave the client,
// its connections and its goroutines behind.
func TestNewClosesWhatItOpenedOnError(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx, []string{"sms"}); err != nil {
		t.Fatal(err)
	}
	rnd, err := templates.New(templates.Config{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sms, err := sandbox.New(sandbox.Config{Recorder: db.SandboxSends()}, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := router.Config{
		DB: db, Renderer: rnd, Metrics: metrics.NewSet(),
		Providers: map[notify.Channel]handlers.Provider{notify.ChannelSMS: sms},
		Kafka:     kafka.Config{Brokers: cluster.ListenAddrs()},
		Delivery:  router.DeliveryConfig{SendTimeout: 10 * time.Second, Lease: time.Second},
	}

	for range 3 {
		cfg.Metrics = metrics.NewSet() // a set takes each gauge once
		if _, err := router.New(cfg, log); err == nil {
			t.Fatal("New accepted a lease shorter than the send timeout")
		}
	}
	// A closed client's goroutines end soon after Close; a leaked one keeps its metadata
	// refresher and one reader per broker connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, stacks := saramaGoroutines()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Kafka client goroutines left after New failed three times:\n%s", n, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// saramaGoroutines counts the goroutines running the Kafka client's code.
func saramaGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	var n int
	var out strings.Builder
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "github.com/IBM/sarama.") {
			n++
			out.WriteString(g + "\n\n")
		}
	}
	return n, out.String()
}
