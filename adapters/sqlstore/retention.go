package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/notify"
)

// PrunedRecords counts what PruneRecords deleted.
type PrunedRecords struct {
	Notifications, Deliveries, SandboxSends, IdempotencyKeys int64
}

// terminalStatuses are the statuses a delivery ends in, as an SQL list.
var terminalStatuses = func() string {
	var q []string
	for _, s := range notify.AllStatuses {
		if s.Terminal() {
			q = append(q, "'"+string(s)+"'")
		}
	}
	return strings.Join(q, ", ")
}()

// PruneRecords deletes the records of notifications older than age (by their fan-out
// time) whose deliveries have all ended: the notification, its deliveries, their
// sandbox sends and provider message ids, in transactions of at most PruneBatch
// deliveries or notifications. A notification with a delivery still queued, sending or
// parked is kept whole, however old. Idempotency keys of the send API older than age go
// too. In-app inbox messages and poisoned messages are never deleted here: they are the
// customer's and the operators'.
//
// Once its records are gone, an event is unknown: GET /v1/notifications/{id} answers 404,
// and the same event committed again would be delivered again.
func (db *DB) PruneRecords(ctx context.Context, age time.Duration) (PrunedRecords, error) {
	var p PrunedRecords
	cutoff := now() - age.Microseconds()
	// Deliveries first, a notification at a time: every delivery of an event has ended.
	for {
		before := p.Deliveries
		ids, err := db.selectIDs(ctx, `SELECT id FROM herald_deliveries d WHERE created_at < ? AND status IN (`+terminalStatuses+`)
			AND NOT EXISTS (SELECT 1 FROM herald_deliveries o WHERE o.event_id = d.event_id AND o.status NOT IN (`+terminalStatuses+`))
			ORDER BY created_at, id LIMIT ?`, cutoff, PruneBatch)
		if err != nil {
			return p, fmt.Errorf("pruning deliveries: %w", err)
		}
		if len(ids) > 0 {
			err = db.InTx(ctx, func(tx *sql.Tx) error {
				res, err := tx.ExecContext(ctx, db.q(`DELETE FROM herald_sandbox_sends WHERE delivery_id IN (`+placeholders(len(ids))+`)`), ids...)
				if err != nil {
					return err
				}
				n, _ := res.RowsAffected()
				p.SandboxSends += n
				// Checked again: a delivery may have been redelivered since the SELECT.
				res, err = tx.ExecContext(ctx, db.q(`DELETE FROM herald_deliveries WHERE id IN (`+placeholders(len(ids))+`)
					AND status IN (`+terminalStatuses+`)`), ids...)
				if err != nil {
					return err
				}
				n, _ = res.RowsAffected()
				p.Deliveries += n
				// The provider message ids of the deliveries deleted.
				_, err = tx.ExecContext(ctx, db.q(`DELETE FROM herald_message_ids WHERE delivery_id IN (`+placeholders(len(ids))+`)
					AND NOT EXISTS (SELECT 1 FROM herald_deliveries d WHERE d.id = herald_message_ids.delivery_id)`), ids...)
				return err
			})
			if err != nil {
				return p, fmt.Errorf("pruning deliveries: %w", err)
			}
		}
		// A full batch that deleted nothing (all redelivered meanwhile) would be selected
		// again: the next run retries.
		if len(ids) < PruneBatch || p.Deliveries == before || ctx.Err() != nil {
			break
		}
	}
	// Then notifications without deliveries: those whose deliveries went above, and
	// those that never had any (no channel, opted out).
	for {
		ids, err := db.selectIDs(ctx, `SELECT id FROM herald_notifications n WHERE created_at < ?
			AND NOT EXISTS (SELECT 1 FROM herald_deliveries d WHERE d.event_id = n.id) ORDER BY created_at, id LIMIT ?`, cutoff, PruneBatch)
		if err != nil {
			return p, fmt.Errorf("pruning notifications: %w", err)
		}
		if len(ids) > 0 {
			res, err := db.W.ExecContext(ctx, db.q(`DELETE FROM herald_notifications WHERE id IN (`+placeholders(len(ids))+`)
				AND NOT EXISTS (SELECT 1 FROM herald_deliveries d WHERE d.event_id = herald_notifications.id)`), ids...)
			if err != nil {
				return p, fmt.Errorf("pruning notifications: %w", err)
			}
			n, _ := res.RowsAffected()
			p.Notifications += n
			if n == 0 {
				break
			}
		}
		if len(ids) < PruneBatch || ctx.Err() != nil {
			break
		}
	}
	for {
		keys, err := db.selectIDs(ctx, `SELECT idem_key FROM herald_idempotency_keys WHERE created_at < ? ORDER BY created_at LIMIT ?`, cutoff, PruneBatch)
		if err != nil {
			return p, fmt.Errorf("pruning idempotency keys: %w", err)
		}
		if len(keys) > 0 {
			res, err := db.W.ExecContext(ctx, db.q(`DELETE FROM herald_idempotency_keys WHERE idem_key IN (`+placeholders(len(keys))+`)`), keys...)
			if err != nil {
				return p, fmt.Errorf("pruning idempotency keys: %w", err)
			}
			n, _ := res.RowsAffected()
			p.IdempotencyKeys += n
		}
		if len(keys) < PruneBatch || ctx.Err() != nil {
			return p, ctx.Err()
		}
	}
}

// selectIDs returns the first column of a query's rows.
func (db *DB) selectIDs(ctx context.Context, query string, args ...any) ([]any, error) {
	rows, err := db.R.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var ids []any
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
