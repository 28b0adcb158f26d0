package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"slices"
	"strings"

	"github.com/heraldhq/herald/notify"
)

// MySQL group transactions in one round trip (ADR 0011). Through database/sql each
// statement of a group transaction is a round trip to the server, and so are BEGIN and
// COMMIT: a fan-out of three channels took eight, a claim four. On MySQL a group is
// therefore built as a list of statements (stmtGroup, as on PostgreSQL: pipeline.go) and
// sent as one text, "START TRANSACTION; …; COMMIT", on a connection of its own pool that
// allows several statements per query (multiStatements), with the arguments put into the
// text by the driver (interpolateParams, on for every MySQL connection: db.go). The
// server runs the statements in order and stops at the first error; the transaction is
// then rolled back. MySQL's UPDATE and INSERT return no rows, so a claim and an inbox
// write read their rows with a SELECT of their own in the same text; each SELECT's rows
// come back as a result set of their own, in order. One statement depends on an
// earlier one's result: the fan-out inserts only the deliveries not recorded under
// other ids (Deliveries.recorded), so a group with fan-outs reads those first and
// sends the rest, COMMIT included, in a second round trip (stmtGroup.then).

// claimMySQL claims deliveries with one UPDATE per lease (claimBatch) and reads the
// rows back with a SELECT: MySQL's UPDATE returns none.
func claimMySQL(g *stmtGroup, rs []*groupReq) {
	for _, c := range groupClaims(rs) {
		g.add(claimUpdate+`IN (`+placeholders(len(c.ids))+`)`+claimFree, slices.Concat(c.set, c.ids, c.free), nil)
		g.add(claimReadQuery+`IN (`+placeholders(len(c.ids))+`)`, c.ids, c.scan)
		g.after = append(g.after, func(context.Context) { c.resolve() })
	}
}

// recordedInMySQL reads the recorded deliveries of n events (recordedQuery) with one IN
// list, through the event index whatever the optimizer estimates: with more values
// than eq_range_index_dive_limit (200) MariaDB estimates the list from the index's
// statistics, and in a loadgen catch-up it chose to scan the whole table for 20 of 389
// such reads, lists of 172 to 250 events, each scan reading every delivery recorded so
// far (docs/performance.md). A scan grows with the table; the index reads 3 rows an
// event (ADR 0016).
func recordedInMySQL(n int) string {
	return recordedSelect + ` FORCE INDEX (herald_deliveries_event) WHERE event_id IN (` + placeholders(n) + `)`
}

// sandboxMySQL records sandbox sends (sandboxBatch) in one multi-row INSERT.
func sandboxMySQL(g *stmtGroup, rs []*groupReq) {
	args := make([]any, 0, 7*len(rs))
	for _, r := range rs {
		args = append(args, r.arg.(SandboxSend).row()...)
	}
	g.add(sandboxInsert+valueRows(len(rs), 7), args, nil)
}

// sentMySQL marks deliveries sent (sentBatch) with one UPDATE, a CASE per column for
// the per-row values.
func sentMySQL(g *stmtGroup, rs []*groupReq) {
	var prov, pmid, at strings.Builder
	var pa, ma, ta, ids []any
	for _, r := range rs {
		a := r.arg.(sentArg)
		prov.WriteString(" WHEN ? THEN ?")
		pmid.WriteString(" WHEN ? THEN ?")
		at.WriteString(" WHEN ? THEN CAST(? AS SIGNED)")
		pa = append(pa, a.id, a.r.Provider)
		ma = append(ma, a.id, a.r.ProviderMessageID)
		ta = append(ta, a.id, a.at.UnixMicro())
		ids = append(ids, a.id)
	}
	g.add(`UPDATE herald_deliveries SET status = ?, provider = CASE id`+prov.String()+` END,
		provider_message_id = CASE id`+pmid.String()+` END, sent_at = CASE id`+at.String()+` END,
		last_error = '', lease_owner = '', lease_until = 0, updated_at = ? WHERE id IN (`+placeholders(len(ids))+`)`,
		slices.Concat([]any{string(notify.StatusSent)}, pa, ma, ta, []any{now()}, ids), nil)
}

// inboxMySQL adds inbox messages in one INSERT (a delivery already there is kept) and
// reads all their ids with one SELECT.
func (db *DB) inboxMySQL(g *stmtGroup, rs []*groupReq) {
	t := now()
	ids := make([]any, 0, len(rs))
	args := make([]any, 0, 6*len(rs))
	for _, r := range rs {
		a := r.arg.(inboxArg)
		args = append(args, a.recipientID, a.deliveryID, a.eventType, a.title, a.body, t)
		ids = append(ids, a.deliveryID)
	}
	found := map[string]int64{}
	g.add(inboxInsert+`VALUES `+valueRows(len(rs), 6)+
		db.onConflictNothing("delivery_id"), args, nil)
	g.add(`SELECT id, delivery_id FROM herald_inbox WHERE delivery_id IN (`+placeholders(len(ids))+`)`, ids, func(row rowScanner) error {
		var id int64
		var d string
		err := row.Scan(&id, &d)
		found[d] = id
		return err
	})
	g.after = append(g.after, func(context.Context) { setInboxIDs(rs, found) })
}

// fanOutMySQL records notifications and deliveries and publishes their messages
// (fanOutBatch): the deliveries recorded under other ids are read with the group's
// first statements, the rest is added once they are known.
func (db *DB) fanOutMySQL(g *stmtGroup, rs []*groupReq) error {
	ctx := context.Background() // the statements are only built here
	ns, ds, topics, byTopic, ibs := fanOutRows(rs)
	if err := db.Notifications().Record(ctx, g, ns); err != nil {
		return err
	}
	recorded := recordedSet{}
	if all := withInbox(ds, ibs); len(all) > 0 {
		events := eventIDs(all)
		g.add(recordedInMySQL(len(events)), events, recorded.scan)
	}
	g.then = func(g *stmtGroup) error {
		ibs := recorded.keepInbox(ibs)
		for i := 0; i < len(ibs); i += 500 {
			if err := db.writeInbox(ctx, g, ibs[i:min(i+500, len(ibs))]); err != nil {
				return err
			}
		}
		ds := recorded.keep(ds)
		// Bound the parameters of one statement (12 per delivery).
		for i := 0; i < len(ds); i += 1000 {
			if err := db.Deliveries().InsertQueued(ctx, g, ds[i:min(i+1000, len(ds))]); err != nil {
				return err
			}
		}
		return db.publishStmts(g, topics, byTopic)
	}
	return nil
}

// sendMySQL runs the group's statements as one transaction, one round trip for the
// statements and one more for each then.
func (db *DB) sendMySQL(ctx context.Context, g *stmtGroup) error {
	if len(g.stmts) == 0 && g.then == nil {
		return nil
	}
	conn, err := db.multi.Conn(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = conn.Close() }()
	begin := "START TRANSACTION"
	for {
		next := g.then
		g.then = nil
		end := ""
		if next == nil {
			end = "COMMIT"
		}
		err := multiQuery(ctx, conn, begin, g.stmts, end)
		if err == nil && next != nil {
			g.stmts = nil
			err = next(g)
		}
		if err != nil {
			// The server stopped at the failed statement with the transaction open (or
			// rolled back, on a deadlock); a connection that cannot roll back is closed.
			if _, rerr := conn.ExecContext(ctx, "ROLLBACK"); rerr != nil {
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			return fmt.Errorf("running group transaction: %w", err)
		}
		if next == nil {
			return nil
		}
		begin = ""
	}
}

// multiQuery sends begin, stmts and end (begin and end may be empty) as one query on
// conn and reads the rows of the statements that return them, in order.
func multiQuery(ctx context.Context, conn *sql.Conn, begin string, stmts []groupStmt, end string) error {
	texts := make([]string, 0, len(stmts)+2)
	var args []any
	var readers []func(rowScanner) error
	if begin != "" {
		texts = append(texts, begin)
	}
	for _, s := range stmts {
		texts = append(texts, s.query)
		args = append(args, s.args...)
		if s.row != nil {
			readers = append(readers, s.row)
		}
	}
	if end != "" {
		texts = append(texts, end)
	}
	if len(texts) == 0 {
		return nil
	}
	rows, err := conn.QueryContext(ctx, strings.Join(texts, ";\n"), args...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	// The driver skips the results of statements that return no rows; each result set
	// left is a SELECT's, in the order of the statements.
	n := 0
	for {
		cols, err := rows.Columns()
		if err != nil {
			return err
		}
		if len(cols) > 0 {
			if n == len(readers) {
				return fmt.Errorf("sqlstore: %d result sets for %d queries", n+1, len(readers))
			}
			for rows.Next() {
				if err := readers[n](rows); err != nil {
					return err
				}
			}
			n++
		}
		if !rows.NextResultSet() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if n != len(readers) {
		return fmt.Errorf("sqlstore: %d result sets for %d queries", n, len(readers))
	}
	return nil
}
