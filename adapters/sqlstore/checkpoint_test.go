package sqlstore_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

func openSQLiteFile(t *testing.T, opts sqlstore.Options) (*sqlstore.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := sqlstore.OpenWith(context.Background(), "sqlite://"+path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.W.Exec(`CREATE TABLE t (b BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return db, path
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// The writer connection does not checkpoint after its commits; the checkpointer copies
// the log into the database file beside it, long before the log reaches SQLite's
// default of 1,000 pages.
func TestSQLiteCheckpointsBesideTheWriter(t *testing.T) {
	db, path := openSQLiteFile(t, sqlstore.Options{})
	var auto int
	if err := db.W.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != 0 {
		t.Fatalf("the writer's wal_autocheckpoint is %d, want 0 (the checkpointer does it)", auto)
	}
	before := fileSize(t, path)
	// About 400 pages: the database file grows only when a checkpoint copies them.
	const rows, size = 100, 16000
	for range rows {
		if _, err := db.W.Exec(`INSERT INTO t VALUES (randomblob(?))`, size); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s, _ := db.Checkpoints(); s.Runs == 0 || fileSize(t, path) < before+rows*size; s, _ = db.Checkpoints() {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes, %d before the inserts: the log was not checkpointed", fileSize(t, path), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s, ok := db.Checkpoints()
	if !ok || s.Runs == 0 || s.Failures != 0 || s.LastError != nil {
		t.Fatalf("checkpoints: %+v, %v", s, ok)
	}
}

// Under a steady stream of commits and short reads (Herald's), the log starts again
// from the beginning once it passes the limit, so it stays a fraction of what was
// written: when the commits are group commits (Herald's pipeline) and when they are
// InTx's (the API's writes; loadgen's core inserting into the outbox).
func TestSQLiteLogStaysBoundedUnderSteadyWrites(t *testing.T) {
	insert := `INSERT INTO t VALUES (randomblob(?))`
	for name, write := range map[string]func(ctx context.Context, db *sqlstore.DB, size int) error{
		"group": func(ctx context.Context, db *sqlstore.DB, size int) error {
			return db.Group(ctx, func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, insert, size)
				return err
			})
		},
		"InTx": func(ctx context.Context, db *sqlstore.DB, size int) error {
			return db.InTx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, insert, size)
				return err
			})
		},
	} {
		t.Run(name, func(t *testing.T) {
			db, path := openSQLiteFile(t, sqlstore.Options{CheckpointEvery: 10 * time.Millisecond, CheckpointPages: 64})
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for ctx.Err() == nil {
						var n int
						_ = db.R.QueryRowContext(ctx, `SELECT length(b) FROM t WHERE rowid = 1`).Scan(&n)
					}
				})
			}
			const rows, size = 1500, 3000
			var most int64
			for i := range rows {
				if err := write(ctx, db, size); err != nil {
					t.Fatal(err)
				}
				if i%50 == 0 {
					if fi, err := os.Stat(path + "-wal"); err == nil {
						most = max(most, fi.Size())
					}
				}
			}
			cancel()
			wg.Wait()
			// Each insert writes about four pages: without restarts the log reaches four
			// times what was inserted (18 MB here); with them, 1.5-3.6 MB was seen on an
			// idle machine and 7.5 MB with both cores busy elsewhere.
			if most > rows*size*5/2 {
				t.Fatalf("the log reached %d bytes after inserting %d: it did not start again", most, rows*size)
			}
			t.Logf("log at most %d bytes, %d inserted", most, rows*size)
		})
	}
}

// A log that grew past LogSizeLimit once, while a long read held the checkpoints back,
// is cut back to the limit when it starts again; SQLite alone keeps the file at its
// largest size until the database is closed.
func TestSQLiteLogFileShrinksAfterAGrowth(t *testing.T) {
	const limit = 1 << 20
	db, path := openSQLiteFile(t, sqlstore.Options{CheckpointEvery: 10 * time.Millisecond, CheckpointPages: 64, LogSizeLimit: limit})
	ctx := context.Background()
	// A read transaction that stays open: no checkpoint can copy what was committed
	// after it began, so the log grows.
	rtx, err := db.R.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rtx.QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	insert := func(rows int) {
		t.Helper()
		for range rows {
			if _, err := db.W.ExecContext(ctx, `INSERT INTO t VALUES (randomblob(?))`, 16000); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(300) // ~5 MB
	grown := fileSize(t, path+"-wal")
	if grown <= 4*limit {
		t.Fatalf("the log is %d bytes with a read open: it did not grow past %d as the test needs", grown, 4*limit)
	}
	if err := rtx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The checkpoints catch up, the writer starts the log again and cuts the file back.
	deadline := time.Now().Add(10 * time.Second)
	for {
		insert(1)
		if s := fileSize(t, path+"-wal"); s <= limit {
			t.Logf("log file %d bytes after %d", s, grown)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log file is still %d bytes (it grew to %d): not cut back to %d", fileSize(t, path+"-wal"), grown, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
