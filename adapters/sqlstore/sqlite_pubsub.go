package sqlstore

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"strings"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/internal/jsonx"
)

// TopicTable is the table that stores a topic's messages: "herald_" followed by the
// topic with every character other than a letter, digit or underscore replaced by "_"
// (topic "events" is the outbox table herald_events).
func TopicTable(topic string) string {
	var b strings.Builder
	b.WriteString("herald_")
	for _, r := range topic {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// OffsetsTable is the table that stores consumer-group offsets of a topic.
func OffsetsTable(topic string) string {
	return "herald_offsets_" + strings.TrimPrefix(TopicTable(topic), "herald_")
}

// SQLiteSchema is a watermill-sql SchemaAdapter for SQLite: one table per topic with an
// AUTOINCREMENT offset. SQLite admits one writer at a time, so offsets are assigned in
// commit order and a reader can never skip a row committed late (the gap problem that
// PostgreSQL needs transaction ids for does not exist here).
type SQLiteSchema struct {
	// SubscribeBatchSize is how many rows one query reads. Default 100.
	SubscribeBatchSize int
}

// SchemaInitializingQueries creates the topic table.
func (s SQLiteSchema) SchemaInitializingQueries(p wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return []wsql.Query{{Query: `CREATE TABLE IF NOT EXISTS "` + TopicTable(p.Topic) + `" (
		"offset" INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL,
		created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
		payload BLOB NOT NULL,
		metadata TEXT NOT NULL DEFAULT '{}'
	)`}}, nil
}

// InsertQuery inserts messages in one multi-row statement.
func (s SQLiteSchema) InsertQuery(p wsql.InsertQueryParams) (wsql.Query, error) {
	q := `INSERT INTO "` + TopicTable(p.Topic) + `" (uuid, payload, metadata) VALUES ` +
		valueRows(len(p.Msgs), 3)
	args := make([]any, 0, 3*len(p.Msgs))
	for _, m := range p.Msgs {
		md, err := jsonx.Marshal(m.Metadata)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("encoding metadata of message %s: %w", m.UUID, err)
		}
		args = append(args, m.UUID, []byte(m.Payload), string(md))
	}
	return wsql.Query{Query: q, Args: args}, nil
}

// SelectQuery reads the next batch after the consumer group's acked offset.
func (s SQLiteSchema) SelectQuery(p wsql.SelectQueryParams) (wsql.Query, error) {
	next, batch, err := nextOffset(p, s.SubscribeBatchSize)
	if err != nil {
		return wsql.Query{}, err
	}
	return wsql.Query{
		Query: fmt.Sprintf(`SELECT "offset", uuid, payload, metadata FROM "%s" WHERE "offset" > (%s) ORDER BY "offset" LIMIT %d`,
			TopicTable(p.Topic), next.Query, batch),
		Args: next.Args,
	}, nil
}

// nextOffset is the query of the consumer group's acked offset for a select, and the
// batch size (default 100).
func nextOffset(p wsql.SelectQueryParams, batch int) (wsql.Query, int, error) {
	next, err := p.OffsetsAdapter.NextOffsetQuery(wsql.NextOffsetQueryParams{Topic: p.Topic, ConsumerGroup: p.ConsumerGroup})
	if batch <= 0 {
		batch = 100
	}
	return next, batch, err
}

// UnmarshalMessage turns a row into a message.
func (s SQLiteSchema) UnmarshalMessage(p wsql.UnmarshalMessageParams) (wsql.Row, error) {
	var r wsql.Row
	var uuid string
	var md stdsql.NullString
	if err := p.Row.Scan(&r.Offset, &uuid, &r.Payload, &md); err != nil {
		return wsql.Row{}, fmt.Errorf("scanning message row: %w", err)
	}
	r.UUID = []byte(uuid)
	msg := message.NewMessage(uuid, r.Payload)
	r.Metadata = []byte(md.String)
	msg.Metadata = decodeMetadata(r.Metadata)
	r.Msg = msg
	return r, nil
}

// SubscribeIsolationLevel is the default: SQLiteBeginner does not hold a transaction
// while messages are handled.
func (s SQLiteSchema) SubscribeIsolationLevel() stdsql.IsolationLevel { return stdsql.LevelDefault }

// SQLiteOffsets is a watermill-sql OffsetsAdapter for SQLite: one row per consumer
// group. Acks only move an offset forward, so a slow concurrent subscriber of the same
// group cannot move it back (it may see a message twice: delivery is at least once).
type SQLiteOffsets struct{}

// SchemaInitializingQueries creates the offsets table.
func (SQLiteOffsets) SchemaInitializingQueries(p wsql.OffsetsSchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return []wsql.Query{{Query: `CREATE TABLE IF NOT EXISTS "` + OffsetsTable(p.Topic) + `" (
		consumer_group TEXT NOT NULL PRIMARY KEY,
		offset_acked INTEGER NOT NULL,
		updated_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
	)`}}, nil
}

// AckMessageQuery stores the last handled offset.
func (SQLiteOffsets) AckMessageQuery(p wsql.AckMessageQueryParams) (wsql.Query, error) {
	return wsql.Query{
		Query: `INSERT INTO "` + OffsetsTable(p.Topic) + `" (consumer_group, offset_acked) VALUES (?, ?)
			ON CONFLICT (consumer_group) DO UPDATE SET offset_acked = max(offset_acked, excluded.offset_acked),
			updated_at = excluded.updated_at`,
		Args: []any{p.ConsumerGroup, p.LastRow.Offset},
	}, nil
}

// NextOffsetQuery returns the acked offset of the group (0 when none).
func (SQLiteOffsets) NextOffsetQuery(p wsql.NextOffsetQueryParams) (wsql.Query, error) {
	return wsql.Query{
		Query: `SELECT COALESCE((SELECT offset_acked FROM "` + OffsetsTable(p.Topic) + `" WHERE consumer_group = ?), 0)`,
		Args:  []any{p.ConsumerGroup},
	}, nil
}

// ConsumedMessageQuery is not needed: there is no lock to take per message.
func (SQLiteOffsets) ConsumedMessageQuery(wsql.ConsumedMessageQueryParams) (wsql.Query, error) {
	return wsql.Query{}, nil
}

// BeforeSubscribingQueries is not needed.
func (SQLiteOffsets) BeforeSubscribingQueries(wsql.BeforeSubscribingQueriesParams) ([]wsql.Query, error) {
	return nil, nil
}

// SQLiteBeginner adapts a SQLite *sql.DB to watermill-sql's subscriber.
//
// watermill-sql reads a batch and then keeps its transaction open while the handler
// runs, writing the ack at the end. On SQLite that cannot work: a transaction that
// began by reading cannot later write once another connection has committed (it fails
// with SQLITE_BUSY_SNAPSHOT, which no busy timeout cures), and a transaction that takes
// the write lock up front would block the handler's own writes. So the transactions
// this Beginner hands out read outside any transaction (WAL readers never block) and
// buffer their writes, which Commit applies in one short write transaction; Rollback
// drops them. The ack is therefore committed after the handler succeeded: a crash in
// between redelivers the message (at least once), never loses it.
type SQLiteBeginner struct {
	R *stdsql.DB // reads
	W *stdsql.DB // writes
}

// BeginTx starts a deferred transaction.
func (b SQLiteBeginner) BeginTx(context.Context, *stdsql.TxOptions) (wsql.Tx, error) {
	return &sqliteDeferredTx{r: b.R, w: b.W}, nil
}

// ExecContext runs a statement.
func (b SQLiteBeginner) ExecContext(ctx context.Context, q string, args ...any) (wsql.Result, error) {
	return b.W.ExecContext(ctx, q, args...)
}

// QueryContext runs a query.
func (b SQLiteBeginner) QueryContext(ctx context.Context, q string, args ...any) (wsql.Rows, error) {
	return b.R.QueryContext(ctx, q, args...) //nolint:sqlclosecheck,rowserrcheck // the caller reads and closes the rows
}

type sqliteDeferredTx struct {
	r, w  *stdsql.DB
	execs []wsql.Query
}

type bufferedResult struct{}

func (bufferedResult) RowsAffected() (int64, error) { return 0, nil }

func (t *sqliteDeferredTx) ExecContext(_ context.Context, q string, args ...any) (wsql.Result, error) {
	t.execs = append(t.execs, wsql.Query{Query: q, Args: args})
	return bufferedResult{}, nil
}

func (t *sqliteDeferredTx) QueryContext(ctx context.Context, q string, args ...any) (wsql.Rows, error) {
	return t.r.QueryContext(ctx, q, args...) //nolint:sqlclosecheck,rowserrcheck // the caller reads and closes the rows
}

func (t *sqliteDeferredTx) Commit() error {
	if len(t.execs) == 0 {
		return nil
	}
	// The ack must land even when the subscriber is closing: use a fresh context.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := t.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning ack transaction: %w", err)
	}
	for _, q := range t.execs {
		if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("acking: %w", err)
		}
	}
	t.execs = nil
	return tx.Commit()
}

func (t *sqliteDeferredTx) Rollback() error {
	t.execs = nil
	return nil
}
