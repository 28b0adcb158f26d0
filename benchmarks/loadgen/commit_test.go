package loadgen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

// The core's transaction is run again after a conflict, and only then: the rolled back
// run leaves nothing, each retry is counted, and after coreAttempts runs the conflict
// is the run's error.
func TestCoreCommitRetriesConflicts(t *testing.T) {
	db, err := sqlstore.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if _, err := db.W.Exec(`CREATE TABLE core_t (n INT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	deadlock := fmt.Errorf("insert: %w", &pgconn.PgError{Code: "40P01", Message: "deadlock detected"})
	w := inserter{db: db, retries: new(atomic.Int64)}
	// fails returns a transaction that writes a row and then fails its first n runs
	// with cause.
	fails := func(n int, cause error) (func(tx *sql.Tx) error, *int) {
		runs := new(int)
		return func(tx *sql.Tx) error {
			*runs++
			if _, err := tx.Exec(`INSERT INTO core_t (n) VALUES (?)`, *runs); err != nil {
				return err
			}
			if *runs <= n {
				return cause
			}
			return nil
		}, runs
	}
	rows := func() int {
		var n int
		if err := db.W.QueryRow(`SELECT COUNT(*) FROM core_t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	fn, runs := fails(2, deadlock)
	if err := w.commit(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
	if *runs != 3 || w.retries.Load() != 2 || rows() != 1 {
		t.Fatalf("two conflicts: %d runs, %d retries, %d rows; want 3, 2, 1", *runs, w.retries.Load(), rows())
	}

	other := errors.New("constraint failed")
	fn, runs = fails(1, other)
	if err := w.commit(context.Background(), fn); !errors.Is(err, other) || *runs != 1 || w.retries.Load() != 2 {
		t.Fatalf("another error: %v after %d runs, %d retries; want it after 1 run, not retried", err, *runs, w.retries.Load())
	}

	fn, runs = fails(coreAttempts, deadlock)
	if err := w.commit(context.Background(), fn); !sqlstore.Conflict(err) || *runs != coreAttempts {
		t.Fatalf("conflicts every time: %v after %d runs; want the conflict after %d", err, *runs, coreAttempts)
	}
	if rows() != 1 || w.retries.Load() != 2+coreAttempts-1 {
		t.Fatalf("%d rows, %d retries; want 1 and %d", rows(), w.retries.Load(), 2+coreAttempts-1)
	}
}
