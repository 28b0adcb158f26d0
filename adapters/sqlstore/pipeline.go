package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/heraldhq/herald/notify"
)

// PostgreSQL group transactions in one round trip (ADR 0009). Through database/sql each
// statement of a group transaction costs a round trip to the server, and so do BEGIN and
// COMMIT: at 250 events/s, where groups are small, Herald's statements, BEGIN and COMMIT
// included, were ~18 per event, each a wake-up of both processes, which on a server that
// is not busy costs more CPU than the statement itself (docs/performance.md, Profile).
// On PostgreSQL a group is therefore built as a list of statements (stmtGroup) that depend
// on no earlier statement's result, and sent as one pipeline (pgx's batch: the
// statements, then one Sync, which makes them one implicit transaction, committed at the
// Sync or rolled back at the first error). What a statement returns is read when the
// pipeline's results come back. What needs a further read, rare (a claim of a row that
// was not free, an inbox message already there), reads it after the commit: those rows
// were not written by the group, so reading them after it tells the same. A group that
// holds a write of its own (Group's fn, which needs a *sql.Tx) runs the same statements
// one by one in a database/sql transaction instead.

// groupStmt is one statement of a group transaction sent in one round trip (PostgreSQL
// here, MySQL in mysql_group.go); row, when set, is called for each row it returns.
type groupStmt struct {
	query string
	args  []any
	row   func(rowScanner) error
}

// stmtGroup is a group transaction being built.
type stmtGroup struct {
	stmts []groupStmt
	// then, when set, adds the statements that follow once the results of those above
	// are read (MySQL's fan-out, which reads the deliveries recorded under other ids
	// first); they run in the same transaction, in a further round trip.
	then func(g *stmtGroup) error
	// after runs after the commit, in order: reads the statements' results needed
	// beyond what they returned, and sets each request's out (or its err).
	after []func(ctx context.Context)
	wake  []string // topics published to
}

func (g *stmtGroup) add(query string, args []any, row func(rowScanner) error) {
	g.stmts = append(g.stmts, groupStmt{query: query, args: args, row: row})
}

// ExecContext adds a statement that returns no rows, so that code that writes through
// an Execer (Notifications.Record, Deliveries.InsertQueued) builds the group's
// statements. The result is nil: nothing is run yet.
func (g *stmtGroup) ExecContext(_ context.Context, query string, args ...any) (sql.Result, error) {
	g.add(query, args, nil)
	return nil, nil
}

// runGroupStmts runs a group transaction on PostgreSQL or MySQL.
func (db *DB) runGroupStmts(ctx context.Context, batch []*groupReq) error {
	send := db.sendPipeline
	if db.Dialect == MySQL {
		send = db.sendMySQL
	}
	var g stmtGroup
	var fns []*groupReq
	var kinds [numBatchKinds][]*groupReq
	for _, r := range batch {
		if r.fn != nil {
			fns = append(fns, r)
			continue
		}
		kinds[r.kind] = append(kinds[r.kind], r)
	}
	for k, rs := range kinds {
		if len(rs) == 0 {
			continue
		}
		if err := db.buildStmts(&g, batchKind(k), rs); err != nil {
			return err
		}
	}
	var err error
	if len(fns) == 0 {
		err = send(ctx, &g)
	} else {
		err = db.runStatementsInTx(ctx, fns, &g)
	}
	if err != nil {
		return err
	}
	db.Wake(g.wake...)
	for _, f := range g.after {
		f(ctx)
	}
	return nil
}

// sendPipeline sends the group's statements in one round trip, as one implicit
// transaction.
func (db *DB) sendPipeline(ctx context.Context, g *stmtGroup) error {
	if len(g.stmts) == 0 {
		return nil
	}
	conn, err := db.W.Conn(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = conn.Close() }()
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("sqlstore: PostgreSQL connection is a %T, not pgx's", dc)
		}
		var b pgx.Batch
		for _, s := range g.stmts {
			q := b.Queue(s.query, s.args...)
			if row := s.row; row != nil {
				q.Query(func(rows pgx.Rows) error {
					for rows.Next() {
						if err := row(rows); err != nil {
							return err
						}
					}
					return rows.Err()
				})
			}
		}
		return c.Conn().SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return fmt.Errorf("running group transaction: %w", err)
	}
	return nil
}

// runStatementsInTx runs the writes fns, then the group's statements one by one, in one
// database/sql transaction.
func (db *DB) runStatementsInTx(ctx context.Context, fns []*groupReq, g *stmtGroup) error {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	for _, r := range fns {
		if err := r.fn(ctx, tx); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := g.exec(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// exec runs the group's statements one by one in tx, then those its then adds.
func (g *stmtGroup) exec(ctx context.Context, tx *sql.Tx) error {
	for {
		for _, s := range g.stmts {
			var err error
			if s.row == nil {
				_, err = tx.ExecContext(ctx, s.query, s.args...)
			} else {
				rows, qerr := tx.QueryContext(ctx, s.query, s.args...)
				err = scanRows(rows, qerr, s.row)
			}
			if err != nil {
				return err
			}
		}
		next := g.then
		if next == nil {
			return nil
		}
		g.stmts, g.then = nil, nil
		if err := next(g); err != nil {
			return err
		}
	}
}

// buildStmts adds the statements of the requests rs, all of kind k, to g, in the
// dialect's SQL (PostgreSQL here, MySQL in mysql_group.go).
func (db *DB) buildStmts(g *stmtGroup, k batchKind, rs []*groupReq) error {
	my := db.Dialect == MySQL
	switch k {
	case batchClaim:
		if my {
			claimMySQL(g, rs)
		} else {
			db.claimPG(g, rs)
		}
	case batchSent:
		if my {
			sentMySQL(g, rs)
		} else {
			sentPG(g, rs)
		}
	case batchSandbox:
		if my {
			sandboxMySQL(g, rs)
		} else {
			sandboxPG(g, rs)
		}
	case batchInbox:
		if my {
			db.inboxMySQL(g, rs)
		} else {
			db.inboxPG(g, rs)
		}
	case batchFanOut:
		if my {
			return db.fanOutMySQL(g, rs)
		}
		return db.fanOutPG(g, rs)
	case batchExec:
		for _, r := range rs {
			q := r.arg.(wsql.Query)
			g.add(q.Query, q.Args, nil)
		}
	default:
		return fmt.Errorf("sqlstore: unknown batch kind %d", k)
	}
	return nil
}

// probeEachPG makes query, which ends in "WHERE <column> ", read the rows of each value
// in $1 (a text array) by a probe of its own. "<column> = ANY($1)" reads the same rows,
// but PostgreSQL estimates it from the column's statistics, and without them (a table
// not yet analyzed, or autovacuum off) it takes each of n values of a column that is not
// unique to match 0.5% of the table: for the deliveries of about 30 events or more it
// read the whole table (the fan-out's earlier lookup did, once per batch: 4.9 million
// rows read for 20,000 events in a loadgen run). The lateral subquery is kept from
// being flattened into a join (OFFSET 0), so each value is one index probe whatever
// the estimate.
func probeEachPG(query string) string {
	return `SELECT r.* FROM unnest($1::text[]) AS v(value) CROSS JOIN LATERAL (` + query + `= v.value OFFSET 0) AS r`
}

// probeAfterPG reads, after a group's commit, the rows of query (which ends in
// "WHERE <column> ") whose column is one of values, through probeEachPG.
func (db *DB) probeAfterPG(ctx context.Context, query string, values []any, scan func(rowScanner) error) error {
	return eachRow(ctx, db.R, probeEachPG(query), []any{anyStrings(values)}, scan)
}

// claimPG claims deliveries with one UPDATE per lease (claimBatch). Rows the UPDATE did
// not take (leased elsewhere, ended, unknown) are read after the commit.
func (db *DB) claimPG(g *stmtGroup, rs []*groupReq) {
	for _, c := range groupClaims(rs) {
		g.add(claimUpdatePG, c.updateArgsPG(), c.scan)
		g.after = append(g.after, func(ctx context.Context) {
			if missing := notFound(c.ids, c.found); len(missing) > 0 {
				if err := db.probeAfterPG(ctx, claimReadQuery, missing, c.scan); err != nil {
					for _, r := range c.rs {
						r.err = fmt.Errorf("reading %d claims: %w", len(c.ids), err)
					}
					return
				}
			}
			c.resolve()
		})
	}
}

// sentPG marks deliveries sent (sentBatch).
func sentPG(g *stmtGroup, rs []*groupReq) {
	ids, prov, pmid, at := make([]string, len(rs)), make([]string, len(rs)), make([]string, len(rs)), make([]int64, len(rs))
	for i, r := range rs {
		a := r.arg.(sentArg)
		ids[i], prov[i], pmid[i], at[i] = a.id, a.r.Provider, a.r.ProviderMessageID, a.at.UnixMicro()
	}
	g.add(sentUpdatePG, []any{string(notify.StatusSent), now(), ids, prov, pmid, at}, nil)
}

// sentUpdatePG is sentPG's statement: status, times, ids, providers, provider message
// ids, sent times.
const sentUpdatePG = `UPDATE herald_deliveries AS d SET status = $1, provider = v.provider,
	provider_message_id = v.pmid, sent_at = v.at, last_error = '', lease_owner = '', lease_until = 0, updated_at = $2
	FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[]) AS v(id, provider, pmid, at) WHERE d.id = v.id`

// sandboxPG records sandbox sends in one INSERT (sandboxBatch).
func sandboxPG(g *stmtGroup, rs []*groupReq) {
	var c [6][]string
	at := make([]int64, len(rs))
	for i, r := range rs {
		a := r.arg.(SandboxSend)
		c[0], c[1], c[2] = append(c[0], a.DeliveryID), append(c[1], a.MessageID), append(c[2], a.Channel)
		c[3], c[4], c[5], at[i] = append(c[3], a.Address), append(c[4], a.Subject), append(c[5], a.Body), a.AcceptedAt.UnixMicro()
	}
	g.add(`INSERT INTO herald_sandbox_sends (delivery_id, message_id, channel, address, subject, body, accepted_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])`,
		[]any{c[0], c[1], c[2], c[3], c[4], c[5], at}, nil)
}

// inboxPG adds inbox messages and returns their ids (inboxBatch); the ids of messages
// that were there already are read after the commit.
func (db *DB) inboxPG(g *stmtGroup, rs []*groupReq) {
	var c [5][]string
	ids := make([]any, 0, len(rs))
	for _, r := range rs {
		a := r.arg.(inboxArg)
		c[0], c[1], c[2] = append(c[0], a.recipientID), append(c[1], a.deliveryID), append(c[2], a.eventType)
		c[3], c[4] = append(c[3], a.title), append(c[4], a.body)
		ids = append(ids, a.deliveryID)
	}
	found := map[string]int64{}
	scan := func(row rowScanner) error {
		var id int64
		var d string
		err := row.Scan(&id, &d)
		found[d] = id
		return err
	}
	g.add(`INSERT INTO herald_inbox (recipient_id, delivery_id, event_type, title, body, created_at)
		SELECT *, $6::bigint FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
		ON CONFLICT (delivery_id) DO NOTHING RETURNING id, delivery_id`, []any{c[0], c[1], c[2], c[3], c[4], now()}, scan)
	g.after = append(g.after, func(ctx context.Context) {
		if missing := notFound(ids, found); len(missing) > 0 {
			if err := db.probeAfterPG(ctx, `SELECT id, delivery_id FROM herald_inbox WHERE delivery_id `, missing, scan); err != nil {
				for _, r := range rs {
					r.err = fmt.Errorf("reading inbox message ids: %w", err)
				}
				return
			}
		}
		setInboxIDs(rs, found)
	})
}

// insertUnrecordedPG inserts queued deliveries, as Deliveries.InsertQueued does, except
// those whose event, channel and address are recorded under another id (Deliveries.unrecorded):
// a probe of the event index per delivery, kept a subquery of its own (OFFSET 0) so
// that its plan does not depend on the table's statistics.
const insertUnrecordedPG = `INSERT INTO herald_deliveries (id, event_id, event_type, channel, lane, recipient_id, address,
	fallback_of, occurred_at, status, created_at, updated_at)
	SELECT v.*, $10, $11::bigint, $11::bigint FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
		$6::text[], $7::text[], $8::text[], $9::bigint[]) AS v(id, event_id, event_type, channel, lane, recipient_id, address,
		fallback_of, occurred_at)
	WHERE NOT EXISTS (SELECT 1 FROM herald_deliveries d WHERE d.event_id = v.event_id AND d.channel = v.channel
		AND d.address = v.address AND d.id <> v.id OFFSET 0)
	ON CONFLICT (id) DO NOTHING`

// fanOutPG records notifications and deliveries and publishes their messages
// (fanOutBatch).
func (db *DB) fanOutPG(g *stmtGroup, rs []*groupReq) error {
	ns, ds, topics, byTopic, ibs := fanOutRows(rs)
	ctx := context.Background() // the statements are only built here
	if err := db.Notifications().Record(ctx, g, ns); err != nil {
		return err
	}
	for i := 0; i < len(ds); i += 1000 {
		g.add(insertUnrecordedPG, deliveryArgsPG(ds[i:min(i+1000, len(ds))], notify.StatusQueued, now()), nil)
	}
	for i := 0; i < len(ibs); i += 1000 {
		if err := db.writeInbox(ctx, g, ibs[i:min(i+1000, len(ibs))]); err != nil {
			return err
		}
	}
	return db.publishStmts(g, topics, byTopic)
}

// publishStmts adds the inserts of messages into their topics, in the order of topics,
// and wakes the topics' subscriptions after the commit.
func (db *DB) publishStmts(g *stmtGroup, topics []string, byTopic map[string][]*message.Message) error {
	schema := db.SchemaAdapter(0)
	for _, topic := range topics {
		ms := byTopic[topic]
		for i := 0; i < len(ms); i += 1000 {
			q, err := schema.InsertQuery(wsql.InsertQueryParams{Topic: topic, Msgs: ms[i:min(i+1000, len(ms))]})
			if err != nil {
				return fmt.Errorf("publishing to %s: %w", topic, err)
			}
			g.add(q.Query, q.Args, nil)
		}
		g.wake = append(g.wake, topic)
	}
	return nil
}
