package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmts caches prepared statements of the hot path (claim, sent, release, inbox,
// sandbox, recipient lookup). Without it SQLite parses each statement again on every
// call and the MySQL driver prepares and closes one per call (three round trips).
// A *sql.Stmt is safe for concurrent use and prepares itself on each pool connection
// that needs it.
type stmts struct {
	mu sync.Mutex
	m  map[stmtKey]*sql.Stmt
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// prepared returns the cached statement of query (in the dialect's placeholders) on pool.
func (db *DB) prepared(ctx context.Context, pool *sql.DB, query string) (*sql.Stmt, error) {
	k := stmtKey{pool, query}
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	if s, ok := db.stmts.m[k]; ok {
		return s, nil
	}
	s, err := pool.PrepareContext(ctx, db.q(query)) //nolint:sqlclosecheck // cached; closed by DB.Close
	if err != nil {
		return nil, err
	}
	if db.stmts.m == nil {
		db.stmts.m = map[stmtKey]*sql.Stmt{}
	}
	db.stmts.m[k] = s
	return s, nil
}

// execP runs a cached statement on pool.
func (db *DB) execP(ctx context.Context, pool *sql.DB, query string, args ...any) (sql.Result, error) {
	s, err := db.prepared(ctx, pool, query) //nolint:sqlclosecheck // cached; closed by DB.Close
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

// queryRowP runs a cached single-row query on pool.
func (db *DB) queryRowP(ctx context.Context, pool *sql.DB, query string, args ...any) rowScanner {
	s, err := db.prepared(ctx, pool, query) //nolint:sqlclosecheck // cached; closed by DB.Close
	if err != nil {
		return errRow{err}
	}
	return s.QueryRowContext(ctx, args...)
}

type rowScanner interface{ Scan(dest ...any) error }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (db *DB) closeStmts() error {
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	var err error
	for _, s := range db.stmts.m {
		err = errors.Join(err, s.Close())
	}
	db.stmts.m = nil
	return err
}
