package sqlstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

// TestPruneConsumedKeepsWhatAGroupStillNeeds: pruning deletes only rows every consumer
// group has acked (on MySQL: acked rows) and old enough, and subscribers read on after it.
func TestPruneConsumedKeepsWhatAGroupStillNeeds(t *testing.T) {
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		const topic = "prune"
		if err := db.InitTopic(topic); err != nil {
			t.Fatal(err)
		}
		publish(t, db, topic, "m1", "m2", "m3", "m4", "m5")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		prune := func(age time.Duration) int64 {
			t.Helper()
			n, err := db.PruneConsumed(ctx, topic, age)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := prune(0); n != 0 {
			t.Fatalf("pruned %d rows nobody consumed", n)
		}
		// One row per batch: receiving a message means the previous ones' acks committed.
		subscribe := func(group string) <-chan *message.Message {
			sub, err := db.NewSubscriber(sqlstore.TransportConfig{ConsumerGroup: group, BatchSize: 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Close() })
			ch, err := sub.Subscribe(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			return ch
		}
		next := func(ch <-chan *message.Message, want string) *message.Message {
			t.Helper()
			m := receive(t, ch, 10*time.Second)
			if m.UUID != want {
				t.Fatalf("got %s, want %s", m.UUID, want)
			}
			return m
		}
		a := subscribe("a")
		next(a, "m1").Ack()
		next(a, "m2").Ack()
		heldA := next(a, "m3") // a has acked m1, m2
		if db.Dialect == sqlstore.MySQL {
			// A queue: acked rows go, whoever acked them.
			if n := prune(time.Hour); n != 0 {
				t.Fatalf("pruned %d rows younger than an hour", n)
			}
			if n := prune(0); n != 2 {
				t.Fatalf("pruned %d rows, want 2", n)
			}
			assertRows(t, db, topic, "m3", "m4", "m5")
		} else {
			b := subscribe("b")
			next(b, "m1").Ack()
			heldB := next(b, "m2") // b has acked m1 only
			if n := prune(time.Hour); n != 0 {
				t.Fatalf("pruned %d rows younger than an hour", n)
			}
			if n := prune(0); n != 1 {
				t.Fatalf("pruned %d rows, want 1 (m1: the only row both groups acked)", n)
			}
			assertRows(t, db, topic, "m2", "m3", "m4", "m5")
			heldB.Ack()
			next(b, "m3").Ack()
			next(b, "m4") // b has acked m1..m3, a m1..m2
			if n := prune(0); n != 1 {
				t.Fatalf("pruned %d rows, want 1 (m2)", n)
			}
			assertRows(t, db, topic, "m3", "m4", "m5")
		}
		heldA.Ack()
		next(a, "m4").Ack()
		next(a, "m5").Ack()
	})
}

func assertRows(t *testing.T, db *sqlstore.DB, topic string, want ...string) {
	t.Helper()
	table := `"` + sqlstore.TopicTable(topic) + `"`
	if db.Dialect == sqlstore.MySQL {
		table = "`" + sqlstore.TopicTable(topic) + "`"
	}
	got := queryStrings(t, db.R, `SELECT uuid FROM `+table+` ORDER BY 1`)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows left %v, want %v", got, want)
	}
}

// On PostgreSQL a pruning statement looks at PruneBatch rows at most: while no consumed
// row is old enough, it must not read the whole topic to find none (it did, every
// minute, for every topic). EXPLAIN ANALYZE on 100,000 consumed rows, none old enough
// (at 5,000 PostgreSQL sorts the whole small table either way).
func TestPostgresPruneReadsAtMostABatch(t *testing.T) {
	ctx := context.Background()
	db := openPostgres(t)
	const topic, rows = "prunescan", 100000
	if err := db.InitTopic(topic); err != nil {
		t.Fatal(err)
	}
	table, offsets := sqlstore.TopicTable(topic), sqlstore.OffsetsTable(topic)
	if _, err := db.W.ExecContext(ctx, `INSERT INTO "`+table+`" (uuid, payload) SELECT 'm' || i, '{}' FROM generate_series(1, $1) i`, rows); err != nil {
		t.Fatal(err)
	}
	if _, err := db.W.ExecContext(ctx, `INSERT INTO "`+offsets+`" (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT 'g', MAX("offset"), MAX(transaction_id) FROM "`+table+`"`); err != nil {
		t.Fatal(err)
	}
	var xid string
	var off int64
	if err := db.R.QueryRowContext(ctx, `SELECT last_processed_transaction_id::text, offset_acked FROM "`+offsets+`"`).Scan(&xid, &off); err != nil {
		t.Fatal(err)
	}
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	var out string
	if err := tx.QueryRowContext(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+sqlstore.PrunePG(topic), xid, off, time.Hour.Microseconds(), sqlstore.PruneBatch).Scan(&out); err != nil {
		t.Fatal(err)
	}
	var plan []struct{ Plan planNode }
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	var walk func(n planNode)
	walk = func(n planNode) {
		if read := (n.ActualRows + n.RemovedByFilter) * n.ActualLoops; n.Relation == table && read > sqlstore.PruneBatch {
			t.Errorf("%s on %s read %.0f rows, more than a batch (%d)", n.NodeType, n.Relation, read, sqlstore.PruneBatch)
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(plan[0].Plan)
	if t.Failed() {
		t.Log(out)
	}
	if !strings.Contains(out, table) {
		t.Fatalf("the plan does not read %s:\n%s", table, out)
	}
}

type planNode struct {
	NodeType        string     `json:"Node Type"`
	Relation        string     `json:"Relation Name"`
	ActualRows      float64    `json:"Actual Rows"`
	ActualLoops     float64    `json:"Actual Loops"`
	RemovedByFilter float64    `json:"Rows Removed by Filter"`
	Plans           []planNode `json:"Plans"`
}

// On MySQL too a pruning statement looks at PruneBatch rows at most. The server counts
// the rows its storage engine hands out per session (Handler_read_*), which MySQL and
// MariaDB both have; the statement runs on 32,768 acked rows, none old enough, and
// may read a few batches (the derived tables it builds are counted too), not the topic.
func TestMySQLPruneReadsAtMostABatch(t *testing.T) {
	ctx := context.Background()
	db, _ := openMySQL(t)
	const topic = "prunescan"
	if err := db.InitTopic(topic); err != nil {
		t.Fatal(err)
	}
	table := "`" + sqlstore.TopicTable(topic) + "`"
	if _, err := db.W.ExecContext(ctx, "INSERT INTO "+table+" (uuid, payload, acked) VALUES ('m', '{}', 1)"); err != nil {
		t.Fatal(err)
	}
	for range 15 { // 2^15 rows
		if _, err := db.W.ExecContext(ctx, "INSERT INTO "+table+" (uuid, payload, acked) SELECT CONCAT(uuid, `offset`), payload, 1 FROM "+table); err != nil {
			t.Fatal(err)
		}
	}
	var rows int
	if err := db.R.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&rows); err != nil || rows != 1<<15 {
		t.Fatalf("%d rows (%v), want %d", rows, err, 1<<15)
	}
	conn, err := db.W.BeginTx(ctx, sqlstore.MySQLPruneTx) // the counters are the session's
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Rollback() }()
	reads := func() int64 { return sessionReads(t, conn, "") }
	before := reads()
	n, err := sqlstore.PruneMySQL(ctx, conn, topic, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	read := reads() - before
	if n != 0 {
		t.Fatalf("pruned %d rows younger than an hour", n)
	}
	if read > 4*sqlstore.PruneBatch {
		t.Fatalf("the statement read %d rows of a %d-row topic, more than a few batches (%d each)", read, rows, sqlstore.PruneBatch)
	}
	t.Logf("read %d rows", read)
}

// Pruning a MySQL topic locks nothing the core's inserts need: with a pruning
// transaction still open, the core inserts a new row without waiting (the lock wait
// timeout is 1 s), whether some rows were old and acked or none (as at start-up). The
// statement it replaces read the (acked, offset) index with shared next-key locks up to
// the end of the acked rows, covering the gap new rows go into; in a loadgen run the
// core's INSERT waited for it and was rolled back in a deadlock.
func TestMySQLPruneDoesNotBlockTheCoresInserts(t *testing.T) {
	ctx := context.Background()
	db, _ := openMySQL(t)
	for _, acked := range []int{3, 0} {
		topic := fmt.Sprintf("prunelock%d", acked)
		if err := db.InitTopic(topic); err != nil {
			t.Fatal(err)
		}
		table := "`" + sqlstore.TopicTable(topic) + "`"
		for i := range acked + 2 {
			if _, err := db.W.ExecContext(ctx, "INSERT INTO "+table+" (uuid, payload, acked) VALUES (?, '{}', ?)", fmt.Sprint(i), i < acked); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Millisecond) // older than the age 0 below
		tx, err := db.W.BeginTx(ctx, sqlstore.MySQLPruneTx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := sqlstore.PruneMySQL(ctx, tx, topic, 0)
		if err != nil || n != int64(acked) {
			_ = tx.Rollback()
			t.Fatalf("%d acked rows: pruned %d (%v)", acked, n, err)
		}
		core, err := db.W.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = core.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 1")
		if err == nil {
			_, err = core.ExecContext(ctx, "INSERT INTO "+table+" (uuid, payload) VALUES ('core', '{}')")
		}
		_ = core.Close()
		_ = tx.Rollback()
		if err != nil {
			t.Errorf("%d acked rows: the core's insert beside an open prune: %v", acked, err)
		}
	}
}
