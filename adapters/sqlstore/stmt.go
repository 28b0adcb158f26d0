package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"
)

// stmts caches prepared statements of the hot path (claim, sent, release, inbox,
// sandbox, recipient lookup). Without it SQLite parses each statement again on every
// call and the MySQL driver prepares and closes one per call (three round trips).
// A *sql.Stmt is safe for concurrent use and prepares itself on each pool connection
// that needs it.
type stmts struct {
	mu sync.Mutex
	m  map[stmtKey]*sql.Stmt
	// wanted: queries a transaction found uncached, to prepare on the writer pool.
	wanted map[string]bool
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// prepared returns the cached statement of query (in the dialect's placeholders) on
// pool, preparing it on first use. The lock is not held while preparing: on SQLite
// the writer pool has one connection, which a group transaction may hold.
func (db *DB) prepared(ctx context.Context, pool *sql.DB, query string) (*sql.Stmt, error) {
	if s := db.cached(pool, query); s != nil {
		return s, nil
	}
	s, err := pool.PrepareContext(ctx, db.q(query))
	if err != nil {
		return nil, err
	}
	k := stmtKey{pool, query}
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	if old, ok := db.stmts.m[k]; ok {
		_ = s.Close() //nolint:sqlclosecheck // a duplicate of the cached one, closed at once
		return old, nil
	}
	if db.stmts.m == nil {
		db.stmts.m = map[stmtKey]*sql.Stmt{}
	}
	db.stmts.m[k] = s
	return s, nil
}

func (db *DB) cached(pool *sql.DB, query string) *sql.Stmt {
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	return db.stmts.m[stmtKey{pool, query}]
}

// on is where a statement runs: a pool (db.W, db.R) or a transaction on db.W.
type on interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// stmtOn returns the cached statement of query for o: a transaction uses the
// statement prepared on its connection (prepared there on first use).
func (db *DB) stmtOn(ctx context.Context, o on, query string) (*sql.Stmt, error) {
	switch o := o.(type) {
	case *sql.DB:
		return db.prepared(ctx, o, query)
	case *sql.Tx:
		if s := db.cached(db.W, query); s != nil {
			return o.StmtContext(ctx, s), nil //nolint:sqlclosecheck // closed with the transaction
		}
		// Preparing on the pool would wait for the transaction's own connection on
		// SQLite: prepare for this transaction; the committer prepares it for the cache
		// once the transaction is over (prepareWanted).
		db.stmts.mu.Lock()
		if db.stmts.wanted == nil {
			db.stmts.wanted = map[string]bool{}
		}
		db.stmts.wanted[query] = true
		db.stmts.mu.Unlock()
		return o.PrepareContext(ctx, db.q(query)) //nolint:sqlclosecheck // closed with the transaction
	}
	return nil, errors.New("sqlstore: statement on an unknown executor")
}

// execP runs a cached statement on o (a pool or a transaction).
func (db *DB) execP(ctx context.Context, o on, query string, args ...any) (sql.Result, error) {
	s, err := db.stmtOn(ctx, o, query) //nolint:sqlclosecheck // cached; closed by DB.Close
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

type rowScanner interface{ Scan(dest ...any) error }

// prepareWanted caches the statements transactions wanted; the committer calls it
// between transactions, when the writer's connection is free.
func (db *DB) prepareWanted() {
	db.stmts.mu.Lock()
	wanted := db.stmts.wanted
	db.stmts.wanted = nil
	db.stmts.mu.Unlock()
	for q := range wanted {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = db.prepared(ctx, db.W, q) //nolint:sqlclosecheck // cached; closed by DB.Close
		cancel()
	}
}

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
