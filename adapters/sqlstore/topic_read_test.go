package sqlstore_test

import (
	"context"
	"encoding/json"
	"testing"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

// TestPostgresTopicReadCostsItsBatch: on PostgreSQL a subscription's read costs its
// batch, not the backlog after the consumer group's offset (PostgresSchema.SelectQuery).
// At the head of 20,000 unconsumed rows, and in their middle, it reads a few dozen
// buffers; watermill-sql's own query read every row after the offset (1,512 and 760
// buffers here) to sort them for the batch. The rows it returns are the batch after the
// offset, in order.
func TestPostgresTopicReadCostsItsBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openPostgres(t)
	const topic, group, batch, backlog = "deliveries.readcost", "g", 250, 20000
	sub, err := db.NewSubscriber(sqlstore.TransportConfig{ConsumerGroup: group}, suiteLogger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if err := sub.SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	offsets := db.OffsetsAdapter()
	init, err := offsets.BeforeSubscribingQueries(wsql.BeforeSubscribingQueriesParams{Topic: topic, ConsumerGroup: group})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range init {
		if _, err := db.W.ExecContext(ctx, q.Query, q.Args...); err != nil {
			t.Fatal(err)
		}
	}
	table := `"` + sqlstore.TopicTable(topic) + `"`
	if _, err := db.W.ExecContext(ctx, `INSERT INTO `+table+` (uuid, payload)
		SELECT g::text, convert_to(repeat('x', 500), 'UTF8') FROM generate_series(1, $1) g`, backlog); err != nil {
		t.Fatal(err)
	}
	if _, err := db.W.ExecContext(ctx, `ANALYZE `+table); err != nil {
		t.Fatal(err)
	}
	sel, err := sqlstore.SchemaAdapterFor(sqlstore.Postgres, batch).SelectQuery(wsql.SelectQueryParams{
		Topic: topic, ConsumerGroup: group, OffsetsAdapter: offsets})
	if err != nil {
		t.Fatal(err)
	}
	var first int64
	if err := db.W.QueryRowContext(ctx, `SELECT MIN("offset") FROM `+table).Scan(&first); err != nil {
		t.Fatal(err)
	}
	for _, from := range []int64{0, first + backlog/2} {
		if from > 0 {
			if _, err := db.W.ExecContext(ctx, `UPDATE "`+sqlstore.OffsetsTable(topic)+`" SET offset_acked = $1,
				last_processed_transaction_id = (SELECT transaction_id FROM `+table+` WHERE "offset" = $1)`, from); err != nil {
				t.Fatal(err)
			}
		}
		var plan string
		if err := db.W.QueryRowContext(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+sel.Query, sel.Args...).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		var p []struct {
			Plan struct {
				Hit  int `json:"Shared Hit Blocks"`
				Read int `json:"Shared Read Blocks"`
			}
		}
		if err := json.Unmarshal([]byte(plan), &p); err != nil || len(p) != 1 {
			t.Fatalf("plan %s: %v", plan, err)
		}
		if blocks := p[0].Plan.Hit + p[0].Plan.Read; blocks > 200 {
			t.Errorf("a read after offset %d touched %d buffers for a batch of %d: it reads the backlog, not the batch\n%s", from, blocks, batch, plan)
		}
		offs := readOffsets(t, db, sel)
		want := max(from, first-1) + 1
		for i, off := range offs {
			if off != want+int64(i) {
				t.Fatalf("after offset %d: row %d has offset %d, want %d", from, i, off, want+int64(i))
			}
		}
		n := len(offs)
		if n != batch {
			t.Fatalf("after offset %d: %d rows, want %d", from, n, batch)
		}
	}
}

// readOffsets runs a topic's select and returns the offsets of its rows.
func readOffsets(t *testing.T, db *sqlstore.DB, sel wsql.Query) []int64 {
	t.Helper()
	rows, err := db.W.QueryContext(context.Background(), sel.Query, sel.Args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var offs []int64
	for rows.Next() {
		var off int64
		var txid, uuid, payload, md any
		if err := rows.Scan(&off, &txid, &uuid, &payload, &md); err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return offs
}
