package loadgen

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

const (
	insertTable = "herald_lg_baseline_insert"
	drainTable  = "herald_lg_baseline_outbox"
	drainRows   = 20000
)

// baselines measures, on Herald's database, the single-row INSERT+COMMIT rate with
// writers concurrent writers for d, and the batch drain rate of an outbox-shaped
// table (select 500 rows locked, skipping locked ones where the dialect can, delete
// them, commit).
func baselines(ctx context.Context, db *sqlstore.DB, writers int, d time.Duration) (Baseline, error) {
	var b Baseline
	id := map[sqlstore.Dialect]string{sqlstore.SQLite: "INTEGER PRIMARY KEY AUTOINCREMENT", sqlstore.Postgres: "BIGSERIAL PRIMARY KEY",
		sqlstore.MySQL: "BIGINT AUTO_INCREMENT PRIMARY KEY"}[db.Dialect]
	for _, t := range []string{insertTable, drainTable} {
		if _, err := db.W.ExecContext(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
			return b, err
		}
		if _, err := db.W.ExecContext(ctx, "CREATE TABLE "+t+" (id "+id+", uuid VARCHAR(64) NOT NULL, payload TEXT NOT NULL)"); err != nil {
			return b, fmt.Errorf("baseline table: %w", err)
		}
	}
	defer func() {
		for _, t := range []string{insertTable, drainTable} {
			_, _ = db.W.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+t)
		}
	}()
	payload := strings.Repeat("x", 400) // about the size of an event

	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				i := n.Add(1)
				if err := db.InTx(ctx, func(tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO "+insertTable+" (uuid, payload) VALUES (?, ?)"), fmt.Sprint(i), payload)
					return err
				}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return b, fmt.Errorf("insert baseline: %w", err)
	}
	b.InsertCommitPerSecond = round(float64(n.Load())/time.Since(start).Seconds(), 1)

	for i := 0; i < drainRows; i += 500 {
		var q strings.Builder
		q.WriteString("INSERT INTO " + drainTable + " (uuid, payload) VALUES ")
		args := make([]any, 0, 1000)
		for j := 0; j < 500; j++ {
			if j > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?, ?)")
			args = append(args, fmt.Sprint(i+j), payload)
		}
		if _, err := db.W.ExecContext(ctx, db.Rebind(q.String()), args...); err != nil {
			return b, fmt.Errorf("filling the drain table: %w", err)
		}
	}
	lock := " FOR UPDATE SKIP LOCKED"
	if db.Dialect == sqlstore.SQLite {
		lock = "" // one writer at a time: nothing to skip
	}
	drained := 0
	start = time.Now()
	for drained < drainRows {
		var got int
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			last, n, err := readBatch(ctx, tx, "SELECT id, uuid, payload FROM "+drainTable+" ORDER BY id LIMIT 500"+lock)
			if err != nil {
				return err
			}
			got = n
			_, err = tx.ExecContext(ctx, db.Rebind("DELETE FROM "+drainTable+" WHERE id <= ?"), last)
			return err
		})
		if err != nil {
			return b, fmt.Errorf("drain baseline: %w", err)
		}
		if got == 0 {
			break
		}
		drained += got
	}
	b.DrainRowsPerSecond = round(float64(drained)/time.Since(start).Seconds(), 1)
	return b, nil
}

// readBatch reads a locked batch as a consumer would and returns its last id and size.
func readBatch(ctx context.Context, tx *sql.Tx, q string) (int64, int, error) {
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	var last int64
	n := 0
	for rows.Next() {
		var u, p string
		if err := rows.Scan(&last, &u, &p); err != nil {
			return 0, 0, err
		}
		n++
	}
	return last, n, rows.Err()
}
