package main

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/outbox"
)

// TestTwoInstances runs two `herald serve` processes on one PostgreSQL or MariaDB
// database (SQL mode) and on one Kafka cluster (Kafka mode), commits events while they run, kills one
// with SIGKILL mid-run, and checks that the other finishes: every delivery ends sent.
// Duplicates can only come from the kill (the window between a provider accepting a
// message and its status being committed); they are counted and reported.
func TestTwoInstances(t *testing.T) {
	bin := buildHerald(t)
	t.Run("postgres", func(t *testing.T) { twoInstances(t, bin, migratedPostgres, nil) })
	t.Run("mysql", func(t *testing.T) { twoInstances(t, bin, migratedMySQL, nil) })
	t.Run("Kafka", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		twoInstances(t, bin, migratedPostgres, c.ListenAddrs())
	})
}

func twoInstances(t *testing.T, bin string, open func(*testing.T) (*sqlstore.DB, string), brokers []string) {
	db, url := open(t)
	ctx := context.Background()
	putCustomers(t, db, 20)
	start := func(name string) *exec.Cmd {
		args := []string{"--db", url, "--sandbox-latency", "2ms"}
		for _, b := range brokers {
			args = append(args, "--kafka-brokers", b)
		}
		return startServe(t, bin, name, args...)
	}
	a, b := start("a"), start("b")
	_ = b

	w, _ := outbox.New(outbox.Config{Dialect: db.Dialect})
	const events = 600
	for i := 0; i < events; i += 50 {
		batch := make([]notify.Event, 50)
		for j := range batch {
			amt := decimal.New(int64(100+i+j), -2)
			batch[j] = notify.Event{ID: fmt.Sprintf("two-%05d", i+j), Type: notify.TypeTransactionPosted,
				OccurredAt: time.Now().UTC(), AccountID: fmt.Sprintf("6222%012d", (i+j)%20), CustomerID: fmt.Sprintf("c%d", (i+j)%20),
				Amount: &amt, Currency: "CNY"}
		}
		if err := db.InTx(ctx, func(tx *sql.Tx) error { return w.Write(ctx, tx, batch...) }); err != nil {
			t.Fatal(err)
		}
		if i == events/3 {
			if err := a.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sum, err := db.Deliveries().Summarize(ctx, "two-", false)
		if err != nil {
			t.Fatal(err)
		}
		if sum.ByStatus[notify.StatusSent] == 3*events {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not finished after instance a was killed: %+v", sum.ByStatus)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dups, err := db.SandboxSends().Duplicates(ctx, "two-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d deliveries sent by the surviving instance's finish; duplicates from the SIGKILL window: %d", 3*events, dups)
	if dups > 10 {
		t.Fatalf("%d duplicates: more than the kill window can explain", dups)
	}
}
