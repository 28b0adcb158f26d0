package sqlstore

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
)

// MariaDB Galera Cluster refuses named locks (GET_LOCK answers error 1235,
// MDEV-30473), so there a MySQL subscription keeps its topic's lease in a table
// instead (ADR 0012): a row per topic with its owner and an expiry, which the holder
// renews every third of defaultTableLeaseTTL. A standby takes the row once it has
// expired. The first refusal switches the database to table leases for good.
//
// Unlike a named lock, a table lease does not end with the holder's connection: a
// holder that crashed keeps its topic until the expiry, and one that stalls for
// longer than it (a pause of the process, a network partition) can find another
// instance reading beside it until it notices, at its next renewal, and stops. The
// claims of deliveries (each send is leased on its row) keep a message from being sent
// twice then; the order of one account's events may not be kept in that window.
// Expiries are compared with each instance's clock: keep the instances' clocks
// synchronized (NTP), as Galera itself requires.

// defaultTableLeaseTTL is how long a table lease lasts without renewal.
const defaultTableLeaseTTL = 15 * time.Second

// erNotSupportedYet is MySQL's ER_NOT_SUPPORTED_YET, Galera's answer to GET_LOCK.
const erNotSupportedYet = 1235

// namedLocksRefused reports whether err is the server refusing named locks.
func namedLocksRefused(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == erNotSupportedYet
}

func (db *DB) tableLeaseTTL() time.Duration {
	if db.leaseTTL > 0 {
		return db.leaseTTL
	}
	return defaultTableLeaseTTL
}

// tableLease is a topic's lease held in herald_leases, renewed until released.
type tableLease struct {
	db    *DB
	name  string
	owner string
	ttl   time.Duration
	lost  atomic.Bool
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// takeTableLease takes the lease called name unless another owner's has not expired.
// It returns nil when another holds it.
func takeTableLease(ctx context.Context, db *DB, name string) (*tableLease, error) {
	l := &tableLease{db: db, name: name, owner: uuid.NewString(), ttl: db.tableLeaseTTL(),
		stop: make(chan struct{}), done: make(chan struct{})}
	held, err := l.renew(ctx)
	if err != nil || !held {
		return nil, err
	}
	go l.keep(ctx)
	return l, nil
}

// renew extends the lease, or takes it when it is free or expired, and reports
// whether this owner holds it. MySQL assigns the columns of ON DUPLICATE KEY UPDATE
// from left to right, so the expiry's IF sees the owner just set.
func (l *tableLease) renew(ctx context.Context) (bool, error) {
	now := time.Now()
	until := now.Add(l.ttl).UnixMicro()
	if _, err := l.db.W.ExecContext(ctx, `INSERT INTO herald_leases (name, owner, expires_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE owner = IF(expires_at < ? OR owner = ?, ?, owner),
		expires_at = IF(owner = ?, ?, expires_at)`,
		l.name, l.owner, until, now.UnixMicro(), l.owner, l.owner, l.owner, until); err != nil {
		return false, fmt.Errorf("taking the table lease %s: %w", l.name, err)
	}
	var owner string
	if err := l.db.W.QueryRowContext(ctx, `SELECT owner FROM herald_leases WHERE name = ?`, l.name).Scan(&owner); err != nil {
		return false, fmt.Errorf("reading the table lease %s: %w", l.name, err)
	}
	return owner == l.owner, nil
}

// keep renews the lease every third of its lifetime until it is released (or ctx, the
// subscription's, ends). The lease is lost when another owner has it, or when renewing
// has failed for two thirds of its lifetime (it may have expired).
func (l *tableLease) keep(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			l.lost.Store(true)
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, l.ttl/3)
		held, err := l.renew(rctx)
		cancel()
		switch {
		case err == nil && held:
			renewed = time.Now()
		case err == nil || time.Since(renewed) > 2*l.ttl/3:
			l.lost.Store(true)
			return
		}
	}
}

// release stops renewing and frees the lease for a standby at once.
func (l *tableLease) release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = l.db.W.ExecContext(ctx, `DELETE FROM herald_leases WHERE name = ? AND owner = ?`, l.name, l.owner)
	})
}

// heldTopic is a subscription's hold on its topic: the connection it reads on and,
// where the lock is not the connection's own (Galera), the table lease.
type heldTopic struct {
	conn  *stdsql.Conn
	lease *tableLease
}

// lost reports whether the table lease was lost: the subscription must stop reading.
func (h *heldTopic) lost() bool { return h.lease != nil && h.lease.lost.Load() }

// release ends the hold: the table lease is freed, and the connection is closed (with
// it a session lock).
func (h *heldTopic) release() {
	if h.lease != nil {
		h.lease.release()
	}
	release(h.conn)
}
