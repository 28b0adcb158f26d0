package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// checkpointer copies an SQLite database's write-ahead log into the database file
// with PASSIVE checkpoints, on a connection of its own, every interval.
//
// SQLite's default is the opposite: the connection whose commit makes the log reach
// 1,000 pages checkpoints it before the commit returns, and that includes an fsync of
// the log and one of the database file. Herald has one writer connection, so every
// write (the core's outbox inserts on this file included) waited for it. The writer
// now runs with wal_autocheckpoint=0 and this loop does the work beside it: a PASSIVE
// checkpoint takes no write lock and waits for no reader, so commits go on while it
// copies. Past a limit, the writer finishes the job between two of its transactions
// (afterCommit), so that the log starts again from the beginning (ADR 0010).
type checkpointer struct {
	db, w *sql.DB
	every time.Duration
	limit int64
	// over is set while the log is past limit and the writer has not yet copied it
	// all (afterCommit).
	over atomic.Bool
	// writing is set while a checkpoint runs on the writer: the other callers of
	// afterCommit leave it to that one.
	writing atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup

	runs, failures atomic.Uint64
	lastErr        atomic.Pointer[error]
	logFrames      atomic.Int64
}

// CheckpointStats says what an SQLite database's checkpointer has done.
type CheckpointStats struct {
	// Runs counts the checkpoints, Failures those that returned an error.
	Runs, Failures uint64
	// LastError is the latest failure, nil if none.
	LastError error
	// LogFrames is the size of the write-ahead log, in pages, at the latest checkpoint.
	LogFrames int64
}

func startCheckpointer(db, w *sql.DB, every time.Duration, limit int64) *checkpointer {
	c := &checkpointer{db: db, w: w, every: every, limit: limit, stop: make(chan struct{})}
	c.wg.Go(c.loop)
	return c
}

func (c *checkpointer) loop() {
	t := time.NewTicker(c.every)
	defer t.Stop()
	ticksOver := 0 // ticks in a row that found the log past the limit
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.checkpoint(c.db) < c.limit {
			ticksOver = 0
			c.over.Store(false)
			continue
		}
		c.over.Store(true)
		// afterCommit runs after group commits and InTx. The writer's other users
		// (single statements) could still make the log grow without end: from the
		// second tick past the limit, run the writer's checkpoint from here too, a
		// few times.
		if ticksOver++; ticksOver >= 2 {
			for range 10 {
				if c.afterCommit(); !c.over.Load() {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
}

// afterCommit runs between two of the writer connection's transactions: once the log
// has passed the limit, a PASSIVE checkpoint on the writer itself.
//
// Under a steady stream of commits, the checkpointer never finds the log fully copied
// (a commit has always added pages since), and SQLite starts the log again from the
// beginning only when a write transaction starts on a fully copied log: it would grow
// without end. On the writer, between its transactions, nothing is added while the
// checkpoint runs: it copies what is left (little, after the checkpointer's PASSIVE)
// and, unless a reader still needs older pages, the next write restarts the log. If a
// reader did, the next call tries again, as SQLite's default does after every commit
// past 1,000 pages. It never waits for readers, and runs once at a time: the core's
// writers calling InTx at once queued one each.
func (c *checkpointer) afterCommit() {
	if !c.over.Load() || !c.writing.CompareAndSwap(false, true) {
		return
	}
	defer c.writing.Store(false)
	if c.checkpoint(c.w) < c.limit {
		c.over.Store(false) // the log started again
	}
}

// checkpoint runs one PASSIVE checkpoint on db and returns the log's size in pages
// (0 after an error). One that another process's checkpoint blocked says so in its
// first column, not with an error.
func (c *checkpointer) checkpoint(db *sql.DB) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busy, log, done int64
	err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done)
	c.runs.Add(1)
	if err != nil {
		c.failures.Add(1)
		err = fmt.Errorf("sqlite checkpoint: %w", err)
		c.lastErr.Store(&err)
		return 0
	}
	c.logFrames.Store(log)
	return log
}

// close stops the loop and closes its connection. The last connection to close copies
// what is left of the log and removes it (SQLite does that on close).
func (c *checkpointer) close() error {
	close(c.stop)
	c.wg.Wait()
	return c.db.Close()
}

func (c *checkpointer) stats() CheckpointStats {
	s := CheckpointStats{Runs: c.runs.Load(), Failures: c.failures.Load(), LogFrames: c.logFrames.Load()}
	if p := c.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

// Checkpoints says what the checkpointer of an SQLite database has done; ok is false
// on PostgreSQL and MySQL, which have none.
func (db *DB) Checkpoints() (s CheckpointStats, ok bool) {
	if db.ckpt == nil {
		return CheckpointStats{}, false
	}
	return db.ckpt.stats(), true
}
