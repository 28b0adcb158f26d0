package sqlstore

import (
	"context"
	stdsql "database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// On PostgreSQL a subscription does not hold a transaction while its batch is
// handled. watermill-sql's log schema shows a row only once every transaction older
// than the row's has ended (transaction_id < pg_snapshot_xmin), and locking the
// consumer group's offsets row FOR UPDATE gives the reading transaction an id: a
// subscription handling a batch for 100 ms would hide every newer row of every topic
// (the core's outbox rows included) for those 100 ms, and each hop of the pipeline
// would wait for the slowest batch of all the others.
//
// Instead a subscription takes a session-level advisory lock named after its consumer
// group and topic on a connection of its own, and keeps it while it runs: it reads a
// batch and acks it in single statements on that connection. Another instance of the
// same consumer group waits for the lock (a standby); when the holder's process or
// connection dies the lock goes with it and the standby resumes from the last acked
// offset. Delivery stays at least once, as with the transaction: what was handled and
// not acked is read again.
//
// MySQL does the same with a named lock (GET_LOCK) per topic (ADR 0012). Its queue
// schema used to let every instance take rows with SELECT ... FOR UPDATE SKIP LOCKED
// in a transaction held while the batch was handled: two instances split a topic row
// by row, so one account's events could be handled side by side, out of order, and
// every read cost a transaction of its own (isolation level, begin, select, ack,
// commit). Holding the lease, the one reader reads without locking rows and acks in a
// group transaction, with other writes. Where the server refuses named locks (MariaDB
// Galera Cluster), the lease is kept in a table instead (table_lease.go).

// standbyInterval is how often a subscription that does not hold its consumer group
// asks for it again.
const standbyInterval = 250 * time.Millisecond

// leaseKey names the advisory lock of a consumer group on a topic. Advisory locks
// are per database, and several Herald deployments may share one in separate schemas:
// the key includes the OID of the topic's offsets table, unique in the database.
func leaseKey(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *stdsql.Row
}, offsetsTable, group string) (int64, error) {
	var oid int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(to_regclass($1)::oid::bigint, 0)`, offsetsTable).Scan(&oid); err != nil {
		return 0, fmt.Errorf("finding %s: %w", offsetsTable, err)
	}
	if oid == 0 {
		return 0, fmt.Errorf("table %s does not exist", offsetsTable)
	}
	h := fnv.New64a()
	_, _ = fmt.Fprintf(h, "herald.subscription\x00%s\x00%d", group, oid)
	return int64(h.Sum64()), nil //nolint:gosec // a lock name: wrapping is fine
}

// offsetsTableOf is the offsets table of topic under an offsets adapter.
func offsetsTableOf(offsets wsql.OffsetsAdapter, topic string) string {
	if a, ok := offsets.(interface{ MessagesOffsetsTable(string) string }); ok {
		return a.MessagesOffsetsTable(topic)
	}
	return `"` + OffsetsTable(topic) + `"`
}

// leasedOffsets reads the consumer group's offset without locking its row: the
// advisory lock already keeps other subscriptions of the group away, and a row lock
// would give every poll a transaction id and a write.
type leasedOffsets struct{ wsql.OffsetsAdapter }

func (a leasedOffsets) NextOffsetQuery(p wsql.NextOffsetQueryParams) (wsql.Query, error) {
	q, err := a.OffsetsAdapter.NextOffsetQuery(p)
	if err != nil {
		return q, err
	}
	trimmed := strings.TrimRight(q.Query, " \t\n")
	if !strings.HasSuffix(trimmed, "FOR UPDATE") {
		return q, fmt.Errorf("unexpected offset query %q", q.Query)
	}
	q.Query = strings.TrimSuffix(trimmed, "FOR UPDATE")
	return q, nil
}

// connQuerier runs the subscriber's select on a held connection.
type connQuerier struct{ c *stdsql.Conn }

func (q connQuerier) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	return q.c.QueryContext(ctx, query, args...) //nolint:rowserrcheck // read checks Err
}

// acquire returns the hold of topic's consumer group, or nil when another
// subscription holds it.
func (s *Subscriber) acquire(ctx context.Context, topic string) (*heldTopic, error) {
	conn, err := s.conns.Conn(ctx)
	if err != nil {
		return nil, err
	}
	h := &heldTopic{conn: conn}
	var held bool
	switch {
	case s.store.Dialect != MySQL:
		held, err = pgLease(ctx, conn, offsetsTableOf(s.offsets, topic), s.cfg.ConsumerGroup)
	case !s.store.tableLeases.Load():
		held, err = mysqlLease(ctx, conn, s.store.getLock, s.store.mysqlDB, topic)
		if !namedLocksRefused(err) {
			break
		}
		s.logger.Info("The server refuses named locks (MariaDB Galera Cluster): subscriptions keep their leases in herald_leases",
			watermill.LogFields{"topic": topic})
		s.store.tableLeases.Store(true)
		fallthrough
	default:
		h.lease, err = takeTableLease(ctx, s.store, mysqlLeaseName(s.store.mysqlDB, topic))
		held = h.lease != nil
	}
	if err != nil {
		release(conn)
		return nil, err
	}
	if !held {
		_ = conn.Close() // back to the pool: it holds nothing
		return nil, nil
	}
	return h, nil
}

// pgLease takes the advisory lock of group on the topic whose offsets table is given,
// unless another session holds it.
func pgLease(ctx context.Context, conn *stdsql.Conn, offsetsTable, group string) (bool, error) {
	key, err := leaseKey(ctx, conn, offsetsTable, group)
	if err != nil {
		return false, err
	}
	var held bool
	err = conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&held)
	return held, err
}

// mysqlLease takes the named lock of topic (GET_LOCK, held by the session until it
// ends), unless another session holds it. MySQL's queue schema has no consumer groups,
// so the lock is the topic's. Lock names are per server, and several Herald
// deployments may share one in separate databases: the name includes the database's
// (schema, from the URL).
func mysqlLease(ctx context.Context, conn *stdsql.Conn, getLock, schema, topic string) (bool, error) {
	if getLock == "" {
		getLock = "SELECT GET_LOCK(?, 0)"
	}
	var held stdsql.NullInt64
	if err := conn.QueryRowContext(ctx, getLock, mysqlLeaseName(schema, topic)).Scan(&held); err != nil {
		return false, mysqlLeaseError(topic, err)
	}
	return held.Valid && held.Int64 == 1, nil
}

// mysqlLeaseError describes a failed GET_LOCK. The error stays the server's:
// namedLocksRefused finds Galera's refusal in it.
func mysqlLeaseError(topic string, err error) error {
	return fmt.Errorf("taking the lease of %s: %w", topic, err)
}

// mysqlLeaseName names the lock of topic in database schema (at most 64 characters,
// MySQL's limit).
func mysqlLeaseName(schema, topic string) string {
	h := fnv.New64a()
	_, _ = fmt.Fprintf(h, "%s\x00%s", schema, TopicTable(topic))
	return fmt.Sprintf("herald.subscription.%016x", h.Sum64())
}

// release ends a held connection's session, and with it the advisory lock: the
// connection is closed, not returned to the pool.
func release(conn *stdsql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

func (s *Subscriber) consumeLeased(ctx, readCtx context.Context, topic string, out chan<- *message.Message) {
	log := s.logger.With(watermill.LogFields{"topic": topic, "consumer_group": s.cfg.ConsumerGroup})
	var h *heldTopic
	defer func() {
		if h != nil {
			h.release()
		}
	}()
	p := s.newPacer(topic)
	defer p.stop()
	standby := false
	for {
		if !p.pause(readCtx) {
			return
		}
		if h != nil && h.lost() {
			log.Error("The topic's table lease was lost (not renewed in time, or taken after it expired); standing by",
				errLeaseLost, nil)
			h.release()
			h = nil
		}
		if h == nil {
			held, err := s.acquire(readCtx, topic)
			switch {
			case err != nil:
				if readCtx.Err() == nil {
					log.Error("Taking the consumer group failed, will retry", err, nil)
				}
				p.next(false, err)
				continue
			case held == nil:
				if !standby {
					log.Info("Another subscriber holds the consumer group; standing by", nil)
					standby = true
				}
				p.standby(standbyInterval)
				continue
			}
			h, standby = held, false
		}
		empty, err := s.leasedBatch(ctx, readCtx, h.conn, topic, out)
		if err != nil {
			if ctx.Err() == nil && !s.closed.Load() {
				log.Error("Reading a batch failed, will retry", err, nil)
			}
			h.release()
			h = nil
		}
		p.next(empty, err)
	}
}

var errLeaseLost = errors.New("table lease lost")

// leasedBatch reads one batch on the held connection, hands its messages out and acks
// the handled prefix in a group transaction (DB.Group), with other writes.
func (s *Subscriber) leasedBatch(ctx, readCtx context.Context, conn *stdsql.Conn, topic string, out chan<- *message.Message) (empty bool, err error) {
	acked, err := s.handle(ctx, readCtx, connQuerier{conn}, s.groupExec, topic, out)
	return err == nil && acked == 0, err
}

// groupExec runs a subscriber's write in a group transaction.
func (s *Subscriber) groupExec(ctx context.Context, q wsql.Query) error {
	return s.store.submit(ctx, &groupReq{kind: batchExec, arg: q})
}
