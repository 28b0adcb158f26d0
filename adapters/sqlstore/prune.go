package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PruneBatch is how many rows one pruning statement deletes at most: short statements
// keep the topic's writers (and, on SQLite, every writer) waiting briefly.
const PruneBatch = 1000

// PruneConsumed deletes the rows of topic that are older than age (by the database's
// clock, the one that stamped them) and that every consumer group has consumed, in statements of at most PruneBatch rows, and
// returns how many it deleted. A row is consumed when:
//   - PostgreSQL: its (transaction_id, offset) is at or before the position every
//     consumer group in herald_offsets_<topic> has acked (watermill-sql's log order);
//     a topic no group has acked keeps every row;
//   - SQLite: its offset is at or below every group's acked offset;
//   - MySQL: it is acked (the queue schema has no consumer groups).
//
// Each statement looks at the oldest PruneBatch consumed rows only (pruneOnce).
//
// Offsets are never reused (BIGSERIAL, AUTOINCREMENT, AUTO_INCREMENT), so deleting
// consumed rows changes nothing a subscriber reads next. A consumer group that no
// longer runs holds the rows after its offset: delete its offsets row to let them go.
func (db *DB) PruneConsumed(ctx context.Context, topic string, age time.Duration) (int64, error) {
	var total int64
	for {
		n, err := db.pruneOnce(ctx, topic, age.Microseconds())
		total += n
		if err != nil {
			return total, fmt.Errorf("pruning consumed rows of %s: %w", topic, err)
		}
		if n < PruneBatch || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

// pruneOnce deletes, of the consumed rows, those of the oldest PruneBatch that are
// older than ageUs. It looks at PruneBatch rows at most: rows are stamped in offset
// order, so past the first one too young there is nothing to delete, and a statement
// that searched all consumed rows for old ones read the whole topic each time while
// none was old enough (every minute, on SQLite holding the one writer: groups waited
// up to 1.8 s in a 1,000,000-event run).
func (db *DB) pruneOnce(ctx context.Context, topic string, ageUs int64) (int64, error) {
	table, offsets := TopicTable(topic), OffsetsTable(topic)
	var res sql.Result
	var err error
	switch db.Dialect {
	case Postgres:
		// The earliest position any group has acked; none: nothing is consumed yet.
		var tx string
		var off int64
		err = db.R.QueryRowContext(ctx, `SELECT last_processed_transaction_id::text, offset_acked FROM "`+offsets+`"
			ORDER BY last_processed_transaction_id, offset_acked LIMIT 1`).Scan(&tx, &off)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		res, err = db.W.ExecContext(ctx, prunePG(table), tx, off, ageUs, PruneBatch)
	case MySQL:
		tx, err := db.W.BeginTx(ctx, mysqlPruneTx)
		if err != nil {
			return 0, err
		}
		n, err := pruneMySQL(ctx, tx, table, ageUs)
		if err != nil {
			_ = tx.Rollback()
			return 0, err
		}
		return n, tx.Commit()
	default:
		res, err = db.W.ExecContext(ctx, `DELETE FROM "`+table+`" WHERE "offset" IN (
			SELECT "offset" FROM (
				SELECT "offset", created_at FROM "`+table+`"
				WHERE "offset" <= (SELECT MIN(offset_acked) FROM "`+offsets+`")
				ORDER BY "offset" LIMIT ?)
			WHERE created_at < CAST(unixepoch('subsec') * 1000000 AS INTEGER) - ?)`, PruneBatch, ageUs)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// prunePG deletes from a PostgreSQL topic table, of the oldest $4 rows at or before
// the position ($1, $2), those older than $3 microseconds.
func prunePG(table string) string {
	return `DELETE FROM "` + table + `" WHERE (transaction_id, "offset") IN (
			SELECT transaction_id, "offset" FROM (
				SELECT transaction_id, "offset", created_at FROM "` + table + `"
				WHERE (transaction_id, "offset") <= ($1::xid8, $2)
				ORDER BY transaction_id, "offset" LIMIT $4) oldest
			WHERE created_at < LOCALTIMESTAMP - make_interval(secs => $3::float8 / 1000000))`
}

// mysqlPruneTx is the transaction pruneMySQL runs in: at READ COMMITTED InnoDB locks
// the rows a DELETE deletes and no gaps, where at REPEATABLE READ, MySQL's default, a
// DELETE by primary key of a row another instance pruned meanwhile locks the gap the
// row was in (the end of the table, where new rows go, once all old ones are gone), by
// InnoDB's documented locking.
var mysqlPruneTx = &sql.TxOptions{Isolation: sql.LevelReadCommitted}

// pruneMySQL deletes from a MySQL topic table, in tx, of the oldest PruneBatch acked
// rows, those older than ageUs microseconds: a plain read picks them, which locks
// nothing, and a DELETE takes them by primary key. A row once acked stays acked, so
// the DELETE deletes what the read saw unless another instance pruned it first. The
// single statement this replaces picked the rows itself (in a derived table, as MySQL
// allows no LIMIT in an IN subquery) and so read the (acked, offset) index with shared
// next-key locks, up to the first unacked row or the end of the index: the gap the
// core's new, unacked rows go into. The core's INSERT waited for the prune, and in a
// loadgen run was the transaction a deadlock with it rolled back.
func pruneMySQL(ctx context.Context, tx *sql.Tx, table string, ageUs int64) (int64, error) {
	var offsets []any
	err := eachRow(ctx, tx, "SELECT `offset` FROM (SELECT `offset`, `created_at` FROM `"+table+"` WHERE `acked` = 1 "+
		"ORDER BY `offset` LIMIT ?) oldest WHERE `created_at` < NOW(6) - INTERVAL ? MICROSECOND", []any{PruneBatch, ageUs},
		func(row rowScanner) error {
			var off int64
			err := row.Scan(&off)
			offsets = append(offsets, off)
			return err
		})
	if err != nil || len(offsets) == 0 {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM `"+table+"` WHERE `offset` IN ("+placeholders(len(offsets))+")", offsets...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
