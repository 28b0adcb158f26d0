package sqlstore

import "context"

// LeaseKey is the advisory lock key of a consumer group on a PostgreSQL topic (for tests).
func LeaseKey(ctx context.Context, db *DB, group, topic string) (int64, error) {
	return leaseKey(ctx, db.W, offsetsTableOf(db.OffsetsAdapter(), topic), group)
}
