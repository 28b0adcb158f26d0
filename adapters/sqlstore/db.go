// Package sqlstore keeps Herald's state in SQL: the topic tables that carry messages
// between stages (watermill-sql adapters), deliveries, recipients, the inbox, the poison
// queue and sandbox sends. SQLite is the embedded default.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect names a SQL dialect.
type Dialect string

// Dialects.
const (
	SQLite Dialect = "sqlite"
)

// DB is an open Herald database. W takes writes; R serves reads. On SQLite, W is a
// single connection (SQLite has one writer at a time; queueing writers in Go is fairer
// and faster than SQLite's sleeping busy handler) and R a pool of read-only
// connections; WAL lets them run side by side. Never start a write on W while holding a
// transaction on W: the pool has one connection.
type DB struct {
	Dialect Dialect
	W       *sql.DB
	R       *sql.DB
	// Location is a printable form of where the database is, without credentials.
	Location string
}

// ParseURL checks a database URL and returns its dialect. Accepted:
// sqlite://relative/path.db, sqlite:///absolute/path.db, sqlite::memory: is refused
// (each connection would see its own database).
func ParseURL(raw string) (Dialect, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("database URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "sqlite", "sqlite3":
		path := u.Host + u.Path
		if u.Opaque != "" {
			path = u.Opaque
		}
		if path == "" || strings.Contains(path, ":memory:") {
			return "", "", fmt.Errorf("database URL %q: give a file path, e.g. sqlite://herald.db", raw)
		}
		return SQLite, path, nil
	case "":
		return "", "", fmt.Errorf("database URL %q: missing scheme, e.g. sqlite://herald.db", raw)
	default:
		return "", "", fmt.Errorf("database URL %q: unsupported scheme %q (supported: sqlite)", raw, u.Scheme)
	}
}

// Open opens the database at rawURL and checks that it answers.
func Open(ctx context.Context, rawURL string) (*DB, error) {
	d, path, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if d != SQLite {
		return nil, fmt.Errorf("dialect %s is not supported", d)
	}
	return openSQLite(ctx, path)
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("creating directory for %s: %w", path, err)
		}
	}
	pragmas := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
	w, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	db := &DB{Dialect: SQLite, W: w, R: r, Location: "sqlite://" + path}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening %s: %w", db.Location, err)
	}
	return db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	return errors.Join(db.W.Close(), db.R.Close())
}

// InTx runs fn in a write transaction and commits it when fn returns nil.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// now is the time stored in *_at columns: microseconds since the Unix epoch, which
// every dialect stores exactly and compares fast.
func now() int64 { return time.Now().UnixMicro() }

func fromMicros(us int64) time.Time {
	return time.UnixMicro(us).UTC()
}
