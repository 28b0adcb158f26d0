package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

// A database made before the sandbox named its messages has herald_sandbox_sends
// without message_id: Migrate adds the column, the rows already there keep their values,
// and new sends record their message ids.
func TestMigrateAddsColumnsToEarlierDatabases(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		if _, err := db.W.ExecContext(ctx, `ALTER TABLE herald_sandbox_sends DROP COLUMN message_id`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.W.ExecContext(ctx, db.Rebind(`INSERT INTO herald_sandbox_sends (delivery_id, channel, address, accepted_at)
			VALUES (?, 'sms', 'x', 1)`), "old"); err != nil {
			t.Fatal(err)
		}
		if err := db.SandboxSends().Add(ctx, sqlstore.SandboxSend{DeliveryID: "new", MessageID: "sbx-new", Channel: "sms",
			Address: "x", AcceptedAt: time.Now()}); err == nil {
			t.Fatal("a send was recorded without the message_id column")
		}
		if err := db.Migrate(ctx, []string{"sms"}); err != nil {
			t.Fatal(err)
		}
		if err := db.SandboxSends().Add(ctx, sqlstore.SandboxSend{DeliveryID: "new", MessageID: "sbx-new", Channel: "sms",
			Address: "x", AcceptedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		for d, want := range map[string]string{"old": "", "new": "sbx-new"} {
			var got string
			if err := db.R.QueryRowContext(ctx, db.Rebind(`SELECT message_id FROM herald_sandbox_sends WHERE delivery_id = ?`), d).Scan(&got); err != nil || got != want {
				t.Errorf("send of %s: message id %q (%v), want %q", d, got, err, want)
			}
		}
	})
}
