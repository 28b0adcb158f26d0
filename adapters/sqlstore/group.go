package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Group commit: handlers that run side by side (the subscriber hands a batch out at
// once) write through Group, which runs the writes of many callers in one transaction
// and commits them together. A commit costs a log flush (PostgreSQL, MySQL) or a WAL
// append (SQLite); the statements themselves are cheap. At low load a write is
// committed at once (nobody else is queued); under load the writes that queued while
// the previous commit ran share the next one, so batches grow with the load and no
// timer adds latency.

// ErrClosed is returned for writes submitted after Close.
var ErrClosed = errors.New("database is closed")

// groupMax bounds one group transaction.
const groupMax = 256

type groupReq struct {
	// fn is a write of its own; when nil, the request is one of a batchable kind
	// (batch.go) run with the others of its kind in one statement.
	fn   func(ctx context.Context, tx *sql.Tx) error
	kind batchKind
	arg  any // the kind's argument
	out  any // the kind's result, set by its batch
	// err is this request's failure found after its transaction committed (a read of
	// the results, pipeline.go); the others' writes stand.
	err  error
	done chan error
}

type grouper struct {
	start sync.Once
	mu    sync.RWMutex // guards closed against sends on queue
	queue chan *groupReq
	stop  chan struct{}
	wg    sync.WaitGroup
	// closed is set under mu by Close; no send on queue happens after it.
	closed bool
}

// Group runs fn in a write transaction shared with other callers' writes and returns
// when that transaction is committed (nil) or has failed (fn's error or the commit's).
// fn may run more than once: if any write of a shared transaction fails, it is rolled
// back and every caller's fn runs again in a transaction of its own, so that one bad
// write fails only its caller. fn must therefore only write through tx, and keep its
// results in variables it sets afresh on each run. ctx is not passed on: fn gets the
// committer's context, so that a write the caller started is finished even if the
// caller's context ends (shutdown) — Group still waits for the outcome.
func (db *DB) Group(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return db.submit(ctx, &groupReq{fn: fn})
}

func (db *DB) submit(ctx context.Context, r *groupReq) error {
	g := &db.group
	g.start.Do(func() { db.startGroup() })
	r.done = make(chan error, 1)
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return ErrClosed
	}
	select {
	case g.queue <- r:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
	return <-r.done
}

func (db *DB) startGroup() {
	g := &db.group
	g.queue = make(chan *groupReq, groupMax)
	g.stop = make(chan struct{})
	for range db.committers { // at least 1 (OpenWith)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			db.commitLoop()
		}()
	}
}

func (db *DB) commitLoop() {
	g := &db.group
	batch := make([]*groupReq, 0, groupMax)
	for {
		var r *groupReq
		select {
		case r = <-g.queue:
		case <-g.stop:
			// Close: finish what was queued before it.
			for {
				select {
				case r := <-g.queue:
					db.commitGroup([]*groupReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], r)
	fill:
		for len(batch) < groupMax {
			select {
			case r := <-g.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		db.commitGroup(batch)
		if db.ckpt != nil {
			db.ckpt.afterCommit()
		}
		db.prepareWanted()
	}
}

// commitGroup runs a batch in one transaction; if that fails, each write alone.
func (db *DB) commitGroup(batch []*groupReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(batch) > 1 {
		if err := db.runGroup(ctx, batch); err == nil {
			for _, r := range batch {
				r.done <- r.err
			}
			return
		}
	}
	for _, r := range batch {
		err := db.runGroup(ctx, []*groupReq{r})
		if err == nil {
			err = r.err
		}
		r.done <- err
	}
}

func (db *DB) runGroup(ctx context.Context, batch []*groupReq) error {
	for _, r := range batch {
		r.err = nil
	}
	if db.Dialect != SQLite {
		return db.runGroupStmts(ctx, batch)
	}
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	var kinds [numBatchKinds][]*groupReq
	for _, r := range batch {
		if r.fn == nil {
			kinds[r.kind] = append(kinds[r.kind], r)
			continue
		}
		if err := r.fn(ctx, tx); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	for k, rs := range kinds {
		if len(rs) == 0 {
			continue
		}
		if err := db.runBatch(ctx, tx, batchKind(k), rs); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	for _, r := range kinds[batchFanOut] {
		for topic := range r.arg.(FanOut).Messages {
			db.Wake(topic)
		}
	}
	return nil
}

// closeGroup stops the committers after they finished every queued write.
func (db *DB) closeGroup() {
	g := &db.group
	g.start.Do(func() {}) // no committer starts after Close
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	if g.queue != nil {
		close(g.stop)
		g.wg.Wait()
	}
}
