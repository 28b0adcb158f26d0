package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/outbox"
)

// TestCrashRecovery runs `herald serve` as a child process on PostgreSQL and on
// SQLite, writes 5,000 events into the outbox while it runs, kills it with SIGKILL
// three times at random moments (restarting it each time) and waits. Every expected
// delivery must end sent: none lost. The sandbox must have seen each delivery at most
// once, except in the documented window (the provider accepted a message, the process
// died before the status was committed, so the next lease holder sends it again): such
// duplicates are counted and reported, and bounded by the number of kills times the
// in-flight sends.
//
// On SQLite the core writes from this process to the file Herald's process has open,
// and each kill leaves Herald's write-ahead log behind for the next run to recover
// (ADR 0010: Herald checkpoints it beside its writer).
func TestCrashRecovery(t *testing.T) {
	bin := buildHerald(t)
	for name, open := range map[string]func(t *testing.T) (*sqlstore.DB, string){
		"postgres": migratedPostgres,
		"sqlite":   migratedSQLite,
	} {
		t.Run(name, func(t *testing.T) {
			db, url := open(t)
			crashRecovery(t, bin, db, url)
		})
	}
}

func crashRecovery(t *testing.T, bin string, db *sqlstore.DB, url string) {
	ctx := context.Background()
	// concurrency bounds the sends in flight per topic, hence the duplicates a kill
	// can cause; the default (250) would make the bound too loose to check anything.
	const customers, events, kills, concurrency = 50, 5000, 3, 8
	putCustomers(t, db, customers)
	run := 0
	start := func() *exec.Cmd {
		run++
		return startServe(t, bin, fmt.Sprintf("run%d", run), "--db", url, "--sandbox-latency", "1ms",
			"--concurrency", fmt.Sprint(concurrency))
	}

	// The core writes all events in batches while Herald runs and crashes.
	written := make(chan error, 1)
	go func() {
		w, _ := outbox.New(outbox.Config{Dialect: db.Dialect})
		for i := 0; i < events; i += 50 {
			batch := make([]notify.Event, 50)
			for j := range batch {
				n := i + j
				amt := decimal.New(int64(100+n), -2)
				batch[j] = notify.Event{ID: fmt.Sprintf("crash-%05d", n), Type: notify.TypeTransactionPosted,
					OccurredAt: time.Now().UTC(), AccountID: fmt.Sprintf("6222%012d", n%customers),
					CustomerID: fmt.Sprintf("c%d", n%customers), Amount: &amt, Currency: "CNY"}
			}
			if err := db.InTx(ctx, func(tx *sql.Tx) error { return w.Write(ctx, tx, batch...) }); err != nil {
				written <- err
				return
			}
			// Ten seconds of writes: the three kills (1.5 to 4 s apart) land while
			// Herald is busy, on the faster SQLite too.
			time.Sleep(100 * time.Millisecond)
		}
		written <- nil
	}()

	progress := func() int {
		sum, err := db.Deliveries().Summarize(ctx, "crash-", false)
		if err != nil {
			t.Fatal(err)
		}
		return sum.ByStatus[notify.StatusSent]
	}
	cmd := start()
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(1500+rand.IntN(2500)) * time.Millisecond) //nolint:gosec // a random moment
		before := progress()
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		t.Logf("kill %d: %d deliveries sent so far", k+1, before)
		cmd = start()
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}

	want := events * 3 // sms, email, inapp
	began := time.Now()
	deadline := began.Add(3 * time.Minute)
	for {
		sum, err := db.Deliveries().Summarize(ctx, "crash-", false)
		if err != nil {
			t.Fatal(err)
		}
		if sum.ByStatus[notify.StatusSent] == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d kills not every delivery ended: %d of %d expected deliveries recorded, by status %v",
				kills, sum.Total, want, sum.ByStatus)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var notifications int
	if err := db.R.QueryRow(`SELECT COUNT(*) FROM herald_notifications WHERE id LIKE 'crash-%'`).Scan(&notifications); err != nil {
		t.Fatal(err)
	}
	if notifications != events {
		t.Fatalf("%d notifications recorded, want %d", notifications, events)
	}
	dups, err := db.SandboxSends().Duplicates(ctx, "crash-")
	if err != nil {
		t.Fatal(err)
	}
	var inbox int
	if err := db.R.QueryRow(`SELECT COUNT(*) FROM herald_inbox WHERE delivery_id IN
		(SELECT id FROM herald_deliveries WHERE event_id LIKE 'crash-%' AND channel = 'inapp')`).Scan(&inbox); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events, %d kills: %d/%d deliveries sent (%d inbox messages), none lost, %d sandbox duplicates from the kill window; finished %.1fs after the last write",
		events, kills, want, want, inbox, dups, time.Since(began).Seconds())
	if inbox != events {
		t.Fatalf("%d inbox messages, want %d", inbox, events)
	}
	// Each kill can catch at most the sends in flight: concurrency per sandbox topic
	// (sms and email, normal lane; the inbox absorbs repeats by delivery id).
	if limit := kills * concurrency * 2; dups > limit {
		t.Fatalf("%d duplicates: more than %d kills with %d sends in flight per topic can explain (%d)", dups, kills, concurrency, limit)
	}
}
