package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

// deadlock runs two transactions that lock rows 1 and 2 in opposite orders, so that
// the server must roll one back, and returns both outcomes.
func deadlock(t *testing.T, db *sqlstore.DB) (error, error) {
	t.Helper()
	for _, q := range []string{`CREATE TABLE conflict_t (id INT PRIMARY KEY, v INT NOT NULL)`,
		`INSERT INTO conflict_t (id, v) VALUES (1, 0), (2, 0)`} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	locked := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	run := func(first, second int) error {
		return db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, db.Rebind(`UPDATE conflict_t SET v = v + 1 WHERE id = ?`), first); err != nil {
				return err
			}
			close(locked[first-1])
			<-locked[second-1]
			_, err := tx.ExecContext(ctx, db.Rebind(`UPDATE conflict_t SET v = v + 1 WHERE id = ?`), second)
			return err
		})
	}
	errc := make(chan error, 1)
	go func() { errc <- run(2, 1) }()
	err1 := run(1, 2)
	return err1, <-errc
}

// A deadlock the server broke is a conflict, on both servers, also when wrapped; the
// transaction it let through committed. Other errors are not conflicts.
func TestConflictIsTheServersDeadlock(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) *sqlstore.DB
	}{
		{"postgres", openPostgres},
		{"mysql", func(t *testing.T) *sqlstore.DB { db, _ := openMySQL(t); return db }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.open(t)
			err1, err2 := deadlock(t, db)
			if (err1 == nil) == (err2 == nil) {
				t.Fatalf("want one transaction rolled back, got %v and %v", err1, err2)
			}
			lost := err1
			if lost == nil {
				lost = err2
			}
			if !sqlstore.Conflict(lost) || !sqlstore.Conflict(fmt.Errorf("the core's commit: %w", lost)) {
				t.Fatalf("a deadlock is not a conflict: %v", lost)
			}
			var sum int
			if err := db.W.QueryRow(`SELECT SUM(v) FROM conflict_t`).Scan(&sum); err != nil {
				t.Fatal(err)
			}
			if sum != 2 {
				t.Fatalf("sum %d, want 2: the winner's two updates only", sum)
			}
			_, err := db.W.Exec(`INSERT INTO conflict_t (id, v) VALUES (1, 0)`)
			if err == nil || sqlstore.Conflict(err) {
				t.Fatalf("a duplicate key is not a conflict: %v", err)
			}
			if sqlstore.Conflict(nil) || sqlstore.Conflict(context.DeadlineExceeded) {
				t.Fatal("nil or a timeout of the caller's is not a conflict")
			}
		})
	}
}

// SQLite's busy answer, once its busy timeout is spent, is a conflict.
func TestConflictIsSQLiteBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	open := func() *sql.DB {
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)&_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	a, b := open(), open()
	if _, err := a.Exec(`CREATE TABLE t (v INT)`); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := a.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.ExecContext(ctx, `ROLLBACK`) }()
	_, err = b.Exec(`INSERT INTO t (v) VALUES (1)`)
	if err == nil || !sqlstore.Conflict(err) {
		t.Fatalf("a write while another holds the writer's lock: %v, want a conflict", err)
	}
}
