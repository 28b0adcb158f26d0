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
// Duplicates can only come from the kill: a message the provider accepted from the
// killed instance whose sent record was not yet committed is sent again by the other
// once the lease ends. How many depends on how many were in that window (a group
// commit's worth on a loaded machine: 38 once under the race detector), so each is
// checked instead: sent exactly twice, first before the kill and again after it. Two
// sends before the kill would be both live instances sending one delivery, which the
// leases exist to prevent.
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
	var killedAt time.Time
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
			killedAt = time.Now()
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
	// The killed process may run for a moment after Signal returns.
	const slack = 50 * time.Millisecond
	rows, err := db.R.QueryContext(ctx, `SELECT s.delivery_id, COUNT(*), MIN(s.accepted_at), MAX(s.accepted_at)
		FROM herald_sandbox_sends s JOIN herald_deliveries d ON d.id = s.delivery_id
		WHERE d.event_id LIKE 'two-%' GROUP BY s.delivery_id HAVING COUNT(*) > 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var id string
		var n int
		var first, last int64
		if err := rows.Scan(&id, &n, &first, &last); err != nil {
			t.Fatal(err)
		}
		f, l := time.UnixMicro(first), time.UnixMicro(last)
		if n != 2 || f.After(killedAt.Add(slack)) || !l.After(killedAt) {
			t.Errorf("delivery %s sent %d times, first %s and last %s from the kill: not the killed instance's send and the survivor's",
				id, n, f.Sub(killedAt), l.Sub(killedAt))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
