package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-sql-driver/mysql"

	"github.com/heraldhq/herald/notify"
)

// LeaseKey is the advisory lock key of a consumer group on a PostgreSQL topic (for tests).
func LeaseKey(ctx context.Context, db *DB, group, topic string) (int64, error) {
	return leaseKey(ctx, db.W, offsetsTableOf(db.OffsetsAdapter(), topic), group)
}

// MySQLLeaseError is how a failed GET_LOCK is reported (for tests).
func MySQLLeaseError(topic string, err error) error { return mysqlLeaseError(topic, err) }

// NamedLocksRefused reports whether err is the server refusing named locks (for tests).
func NamedLocksRefused(err error) bool { return namedLocksRefused(err) }

// UseTableLeases makes db's MySQL subscriptions keep their leases in herald_leases,
// as on a server that refuses named locks, with leases of ttl (for tests).
func UseTableLeases(db *DB, ttl time.Duration) {
	db.tableLeases.Store(true)
	db.leaseTTL = ttl
}

// RefuseNamedLocks makes db's GET_LOCK a statement the server refuses with error
// 1235, as Galera refuses GET_LOCK (for tests).
func RefuseNamedLocks(db *DB) {
	db.getLock = "SELECT ? IN (SELECT expires_at FROM herald_leases LIMIT 1)"
}

// TableLeases reports whether db's subscriptions keep their leases in a table.
func TableLeases(db *DB) bool { return db.tableLeases.Load() }

// MySQLLeaseName is the named lock of a MySQL topic (for tests).
func MySQLLeaseName(db *DB, topic string) string { return mysqlLeaseName(db.mysqlDB, topic) }

// BatchStatements runs each batched write (fan-out records and topic rows, claims,
// sandbox and inbox records, sent) once per size in sizes, all in one transaction, and
// returns the number of statements that transaction's PostgreSQL connection has
// prepared after each size (for tests).
func BatchStatements(ctx context.Context, db *DB, sizes []int) ([]int, error) {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	var counts []int
	for _, n := range sizes {
		reqs := func(arg func(i int) any) []*groupReq {
			rs := make([]*groupReq, n)
			for i := range rs {
				rs[i] = &groupReq{arg: arg(i)}
			}
			return rs
		}
		id := func(i int) string { return fmt.Sprintf("bs-%d-%d", n, i) }
		topic := DeliveryTopic("sms", notify.LaneNormal)
		steps := []struct {
			kind batchKind
			arg  func(i int) any
		}{
			{batchFanOut, func(i int) any {
				return FanOut{Notification: Notification{ID: id(i), Type: "x", Status: "fanned_out", OccurredAt: time.Now()},
					Deliveries: []notify.Delivery{{ID: id(i), EventID: id(i), EventType: "x", Channel: notify.ChannelSMS,
						Lane: notify.LaneNormal, Address: "+8613800138000", OccurredAt: time.Now()}},
					Messages: map[string][]*message.Message{topic: {message.NewMessage(id(i), []byte("{}"))}}}
			}},
			{batchClaim, func(i int) any { return claimArg{id: id(i), owner: "o", lease: time.Minute} }},
			{batchSandbox, func(i int) any {
				return SandboxSend{DeliveryID: id(i), Channel: "sms", Address: "x", AcceptedAt: time.Now()}
			}},
			{batchInbox, func(i int) any {
				return inboxArg{recipientID: "r", deliveryID: id(i), eventType: "x", title: "t", body: "b"}
			}},
			{batchSent, func(i int) any { return sentArg{id: id(i), r: notify.Receipt{Provider: "p"}, at: time.Now()} }},
		}
		for _, s := range steps {
			var g stmtGroup
			if err := db.buildStmts(&g, s.kind, reqs(s.arg)); err != nil {
				return nil, err
			}
			if err := g.exec(ctx, tx); err != nil {
				return nil, err
			}
		}
		var c int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_statements`).Scan(&c); err != nil {
			return nil, err
		}
		counts = append(counts, c)
	}
	return counts, nil
}

// InsertUnrecordedPG is the PostgreSQL statement that inserts a fan-out batch's
// deliveries except those recorded under other ids (for tests).
const InsertUnrecordedPG = insertUnrecordedPG

// GroupWrite is a write of a test's group transaction: a claim of ClaimID by Owner, or
// the statement Exec.
type GroupWrite struct {
	ClaimID, Owner, Exec string
	// Sandbox, when set, records a sandbox send of this delivery.
	Sandbox string
	// FanOut, when set, records a notification of this id with one SMS delivery of the
	// same id and publishes a message to its topic.
	FanOut string
}

// GroupResult is what a GroupWrite got.
type GroupResult struct {
	Err   error
	Claim Claim
}

// CommitGroup runs writes as one group transaction, as the committers do, and returns
// what each got (for tests).
func CommitGroup(db *DB, writes []GroupWrite) []GroupResult {
	batch := make([]*groupReq, len(writes))
	for i, w := range writes {
		r := &groupReq{kind: batchExec, arg: wsql.Query{Query: w.Exec}, done: make(chan error, 1)}
		switch {
		case w.FanOut != "":
			topic := DeliveryTopic("sms", notify.LaneNormal)
			r.kind, r.arg = batchFanOut, FanOut{Notification: Notification{ID: w.FanOut, Type: "x", Status: "fanned_out", OccurredAt: time.Now()},
				Deliveries: []notify.Delivery{{ID: w.FanOut, EventID: w.FanOut, EventType: "x", Channel: notify.ChannelSMS,
					Lane: notify.LaneNormal, Address: "+8613800138000", OccurredAt: time.Now()}},
				Messages: map[string][]*message.Message{topic: {message.NewMessage(w.FanOut, []byte("{}"))}}}
		case w.Sandbox != "":
			r.kind, r.arg = batchSandbox, SandboxSend{DeliveryID: w.Sandbox, Channel: "sms", Address: "x", AcceptedAt: time.Now()}
		case w.Exec == "":
			r.kind, r.arg = batchClaim, claimArg{id: w.ClaimID, owner: w.Owner, lease: time.Minute}
		}
		batch[i] = r
	}
	db.commitGroup(batch)
	out := make([]GroupResult, len(batch))
	for i, r := range batch {
		out[i].Err = <-r.done
		if c, ok := r.out.(claimOut); ok && out[i].Err == nil {
			out[i].Claim, out[i].Err = c.c, c.err
		}
	}
	return out
}

// CountMySQLGroupPackets makes db, opened at rawURL on MySQL, run its group
// transactions on connections that count the packets they send to the server, and
// returns the count (for tests). The driver sends a query as one packet (up to 16 MiB),
// so the count after a connection's handshake is the number of round trips.
func CountMySQLGroupPackets(db *DB, rawURL string) (*atomic.Int64, error) {
	var n atomic.Int64
	multi, err := countingMySQL(db, rawURL, true, func([]byte) { n.Add(1) })
	if err != nil {
		return nil, err
	}
	multi.SetMaxOpenConns(db.committers)
	_ = db.multi.Close()
	db.multi = multi
	return &n, nil
}

// MySQLSubscriberQueries makes db's subscribers, opened at rawURL on MySQL, use
// connections that record the packets they send; queries(s) returns how many
// contained s (for tests). Subscribers made before the call keep their pool.
func MySQLSubscriberQueries(db *DB, rawURL string) (queries func(s string) int, err error) {
	var mu sync.Mutex
	var sent []string
	sub, err := countingMySQL(db, rawURL, false, func(b []byte) {
		mu.Lock()
		sent = append(sent, string(b))
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	_ = db.sub.Close()
	db.sub = sub
	return func(s string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, p := range sent {
			if strings.Contains(p, s) {
				n++
			}
		}
		return n
	}, nil
}

// countingMySQL opens a pool at rawURL (multiStatements if multi) whose connections
// call seen with each packet they send.
func countingMySQL(db *DB, rawURL string, multi bool, seen func([]byte)) (*sql.DB, error) {
	_, dsn, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MultiStatements = multi
	cfg.Net = fmt.Sprintf("counting-%p-%t", db, multi)
	mysql.RegisterDialContext(cfg.Net, func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, seen}, nil
	})
	return sql.Open("mysql", cfg.FormatDSN())
}

type countingConn struct {
	net.Conn
	seen func([]byte)
}

func (c countingConn) Write(b []byte) (int, error) {
	c.seen(b)
	return c.Conn.Write(b)
}

// Committers is how many group-commit transactions db runs at once (for tests).
func Committers(db *DB) int { return db.committers }

// PrunePG is the statement that prunes a PostgreSQL topic (for tests).
func PrunePG(topic string) string { return prunePG(TopicTable(topic)) }

// MySQLPruneTx is the transaction PruneConsumed prunes a MySQL topic in (for tests).
var MySQLPruneTx = mysqlPruneTx

// PruneMySQL prunes a MySQL topic in tx, as each of PruneConsumed's transactions does,
// and returns how many rows it deleted (for tests).
func PruneMySQL(ctx context.Context, tx *sql.Tx, topic string, age time.Duration) (int64, error) {
	return pruneMySQL(ctx, tx, TopicTable(topic), age.Microseconds())
}

// ClaimUpdatePG and SentUpdatePG are PostgreSQL's claim and sent statements.
const (
	ClaimUpdatePG = claimUpdatePG
	SentUpdatePG  = sentUpdatePG
)

// SetInFlightScan sets how many deliveries a page of an in-flight status reads on
// PostgreSQL.
func SetInFlightScan(db *DB, n int) { db.inFlightScan = n }

// RecordedInMySQL is the statement a MySQL fan-out reads the recorded deliveries of n
// events with (for tests).
var RecordedInMySQL = recordedInMySQL

// PendingQuery is the statement of Pending (for tests).
func (s *Deliveries) PendingQuery() string { return s.pendingQuery() }
