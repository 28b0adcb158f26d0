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
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Dialect names a SQL dialect.
type Dialect string

// Dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql"
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
	// sub serves the SQL subscribers on PostgreSQL and MySQL. A subscription holds a
	// connection (its transaction) while its handler runs, and the handler needs W:
	// sharing one bounded pool deadlocks as soon as the subscriptions outnumber it.
	// Its size is bounded by the number of subscriptions.
	sub *sql.DB
	// multi runs MySQL's group transactions, several statements per query
	// (mysql_group.go), one connection per committer; nil on PostgreSQL and SQLite.
	multi *sql.DB
	// mysqlDB is the MySQL database of the URL, which names the subscriptions' locks
	// (lease.go).
	mysqlDB string
	// tableLeases is set once the MySQL server refused a named lock (Galera): the
	// subscriptions then keep their leases in herald_leases (table_lease.go), which
	// last leaseTTL (0: defaultTableLeaseTTL) without renewal.
	tableLeases atomic.Bool
	leaseTTL    time.Duration
	getLock     string // the named lock's statement; "" is GET_LOCK (tests change it)
	// inFlightScan bounds a page of an in-flight status on PostgreSQL (Deliveries.List);
	// 0 is defaultInFlightScan (tests change it).
	inFlightScan int
	// stmts caches the hot path's prepared statements.
	stmts stmts
	// group commits the writes of concurrent handlers together (Group) with
	// committers transactions at a time.
	group      grouper
	committers int
	// wakes wakes subscriptions after commits that published to their topic.
	wakes wakeHub
	// recipients batches concurrent recipient reads.
	recipients recipientLoader
	// ckpt checkpoints an SQLite database's write-ahead log; nil on PostgreSQL and MySQL.
	ckpt *checkpointer
	// Location is a printable form of where the database is, without credentials.
	Location string
}

// ParseURL checks a database URL and returns its dialect and the driver's DSN.
// Accepted: sqlite://relative/path.db, sqlite:///absolute/path.db (sqlite::memory: is
// refused: each connection would see its own database), postgres://user:pass@host:5432/db?sslmode=disable
// (postgresql:// too; parameters are passed to the server, e.g. search_path) and
// mysql://user:pass@host:3306/db (MySQL or MariaDB; parameters go to the driver, whose
// interpolateParams Herald turns on).
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
	case "postgres", "postgresql":
		if u.Host == "" {
			return "", "", fmt.Errorf("database URL %s: missing host", redact(u))
		}
		// Herald's batched statements keep one text whatever their size (batch.go), so
		// PostgreSQL would settle on a generic plan per connection: one chosen while the
		// tables are small degraded as they grew (150,000 events: 693 events/s and a
		// p99 of 40 s, against 939 and 0.7 s planned per execution; with the statements
		// of session 25, 2,291 events/s and 15.6 s against 3,096–3,737 and 0.2 s: on an
		// empty table the generic plan of an UPDATE joined to unnest scans the table;
		// docs/performance.md).
		// Nor do they gain from JIT compilation: each is short, and PostgreSQL compiles
		// once a plan's estimated cost passes jit_above_cost, which an estimate made
		// without statistics can reach on a large table (the per-value probes of
		// eachRowIn did at 60,000 deliveries: 3 ms of compiling per batch for 1 ms of
		// work). A URL that sets plan_cache_mode or jit keeps its own.
		q := u.Query()
		for k, v := range map[string]string{"plan_cache_mode": "force_custom_plan", "jit": "off"} {
			if q.Get(k) == "" {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
		return Postgres, u.String(), nil
	case "mysql", "mariadb":
		if u.Host == "" || strings.Trim(u.Path, "/") == "" {
			return "", "", fmt.Errorf("database URL %s: give host and database, e.g. mysql://root@127.0.0.1:3306/herald", redact(u))
		}
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.DBName = "tcp", u.Host, strings.Trim(u.Path, "/")
		if u.User != nil {
			cfg.User = u.User.Username()
			cfg.Passwd, _ = u.User.Password()
		}
		cfg.Params = map[string]string{}
		for k, v := range u.Query() {
			cfg.Params[k] = v[0]
		}
		cfg.MultiStatements = false
		// The driver puts the arguments into the statement text (escaped for the
		// connection's character set and SQL mode): one round trip per statement,
		// where a server-side prepare, execute and close takes three. A URL parameter
		// interpolateParams=false turns it off (later parameters win).
		cfg.InterpolateParams = true
		cfg.ParseTime = false
		return MySQL, cfg.FormatDSN(), nil
	case "":
		return "", "", fmt.Errorf("database URL %q: missing scheme, e.g. sqlite://herald.db", raw)
	default:
		return "", "", fmt.Errorf("database URL %q: unsupported scheme %q (supported: sqlite, postgres, mysql)", redact(u), u.Scheme)
	}
}

// Options tune the connection pool.
type Options struct {
	// MaxConns bounds the PostgreSQL or MySQL pool. Default 16. Each subscribed topic
	// holds one connection while it handles a batch; size it above the number of
	// topics plus the API's concurrency. SQLite uses one writer and 8 readers.
	MaxConns int
	// Committers is how many group-commit transactions (DB.Group) run at once on
	// PostgreSQL and MySQL. Default 2, where a group transaction is one round trip
	// (pipeline.go, mysql_group.go); at most MaxConns/2. On MySQL they have a
	// connection each besides the pool. SQLite always has one writer.
	Committers int
	// CheckpointEvery is how often an SQLite database's checkpointer copies the
	// write-ahead log into the database file; CheckpointPages the log's size, in
	// 4 KiB pages, past which the writer connection does it (checkpoint.go). Defaults
	// 100 ms and 8,192 pages.
	CheckpointEvery time.Duration
	CheckpointPages int64
	// LogSizeLimit is the size, in bytes, an SQLite write-ahead log file is cut back to
	// when the log starts again from the beginning. SQLite reuses the file rather than
	// shrinking it, so without a limit a log that grew large once (a long read holding
	// back the checkpoints, say) kept its size on disk until the database was closed.
	// Default 64 MiB, above the log's size under steady load.
	LogSizeLimit int64
}

// Open opens the database at rawURL with default options and checks that it answers.
func Open(ctx context.Context, rawURL string) (*DB, error) {
	return OpenWith(ctx, rawURL, Options{})
}

// OpenWith opens the database at rawURL and checks that it answers.
func OpenWith(ctx context.Context, rawURL string, opts Options) (*DB, error) {
	if opts.MaxConns <= 0 {
		opts.MaxConns = 16
	}
	d, dsn, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if opts.Committers <= 0 {
		// Fewer committers make larger groups, so fewer commits. Two keep up with a
		// burst (each group is one round trip) and cost the server less CPU than four
		// (docs/performance.md: PostgreSQL session 11; MySQL session 15, once its
		// subscriptions' acks joined the groups, ADR 0012).
		opts.Committers = 2
	}
	if d == SQLite {
		return openSQLite(ctx, dsn, opts)
	}
	u, _ := url.Parse(rawURL)
	driver := map[Dialect]string{Postgres: "pgx", MySQL: "mysql"}[d]
	pool, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	pool.SetMaxOpenConns(opts.MaxConns)
	pool.SetMaxIdleConns(opts.MaxConns)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	subs, err := sql.Open(driver, dsn)
	if err != nil {
		_ = pool.Close()
		return nil, err
	}
	subs.SetMaxIdleConns(16)
	subs.SetConnMaxIdleTime(time.Minute)
	db := &DB{Dialect: d, W: pool, R: pool, sub: subs, Location: redact(u), committers: max(1, min(opts.Committers, opts.MaxConns/2))}
	if d == MySQL {
		cfg, err := mysql.ParseDSN(dsn)
		if err == nil {
			db.mysqlDB = cfg.DBName
			cfg.MultiStatements = true
			db.multi, err = sql.Open(driver, cfg.FormatDSN())
		}
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		db.multi.SetMaxOpenConns(db.committers)
		db.multi.SetMaxIdleConns(db.committers)
		db.multi.SetConnMaxIdleTime(5 * time.Minute)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connecting to %s: %w", db.Location, err)
	}
	return db, nil
}

// redact prints a URL without its password.
func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}

func openSQLite(ctx context.Context, path string, opts Options) (*DB, error) {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("creating directory for %s: %w", path, err)
		}
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = 100 * time.Millisecond
	}
	if opts.CheckpointPages <= 0 {
		opts.CheckpointPages = 8192
	}
	if opts.LogSizeLimit <= 0 {
		opts.LogSizeLimit = 64 << 20
	}
	open := func(params string) (*sql.DB, error) {
		return sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"+params)
	}
	// The writer never checkpoints: the checkpointer does, beside it (checkpoint.go).
	// The writer starts the log again after a checkpoint copied all of it, and then
	// cuts the file back to the limit.
	w, err := open(fmt.Sprintf("&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(%d)&_txlock=immediate", opts.LogSizeLimit))
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := open("&_pragma=query_only(1)")
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	c, err := open("")
	if err != nil {
		_ = w.Close()
		_ = r.Close()
		return nil, err
	}
	c.SetMaxOpenConns(1)
	c.SetConnMaxIdleTime(0)
	db := &DB{Dialect: SQLite, W: w, R: r, Location: "sqlite://" + path, committers: 1}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.PingContext(pctx); err != nil {
		_ = db.Close()
		_ = c.Close()
		return nil, fmt.Errorf("opening %s: %w", db.Location, err)
	}
	db.ckpt = startCheckpointer(c, w, opts.CheckpointEvery, opts.CheckpointPages)
	return db, nil
}

// Close closes the pools.
func (db *DB) Close() error {
	db.closeGroup()
	err := db.closeStmts()
	if db.sub != nil {
		err = errors.Join(err, db.sub.Close())
	}
	if db.multi != nil {
		err = errors.Join(err, db.multi.Close())
	}
	if db.W == db.R {
		return errors.Join(err, db.W.Close())
	}
	err = errors.Join(err, db.W.Close(), db.R.Close())
	if db.ckpt != nil {
		// Last, so that its connection is the last one and copies the rest of the log.
		err = errors.Join(err, db.ckpt.close())
	}
	return err
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
	if db.ckpt != nil {
		db.ckpt.afterCommit()
	}
	return nil
}

// now is the time stored in *_at columns: microseconds since the Unix epoch, which
// every dialect stores exactly and compares fast.
func now() int64 { return time.Now().UnixMicro() }

func fromMicros(us int64) time.Time {
	return time.UnixMicro(us).UTC()
}
