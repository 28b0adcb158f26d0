package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// MarkSent records each delivery's provider, provider message id and time exactly,
// whatever the id holds, for deliveries marked at once, which the group commit puts in
// shared statements (unnest on PostgreSQL, a CASE per column on MySQL) as often as the
// goroutines meet.
func TestMarkSentRecordsReceipts(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		pmids := []string{`it's "quoted" \ and \\n`, "短信-１", "", "?", "x,y]"}
		base := time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC)
		at := func(i int) time.Time { return base.Add(time.Duration(i)*time.Hour + time.Duration(i)*time.Microsecond) }
		var ds []notify.Delivery
		for i := range pmids {
			ds = append(ds, notify.Delivery{ID: fmt.Sprintf("dlv_sent_%d", i), EventID: "e-sent", EventType: "x",
				Channel: notify.ChannelSMS, Lane: notify.LaneNormal, Address: notify.Address(fmt.Sprintf("+86138%08d", i)), OccurredAt: base})
		}
		if err := db.Deliveries().InsertQueued(ctx, db.W, ds); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, len(ds))
		for i, d := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = db.Deliveries().MarkSent(ctx, d.ID, notify.Receipt{Provider: fmt.Sprintf("p%d", i), ProviderMessageID: pmids[i]}, at(i))
			}()
		}
		wg.Wait()
		for i, d := range ds {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			got, err := db.Deliveries().Get(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != notify.StatusSent || got.Provider != fmt.Sprintf("p%d", i) || got.ProviderMessageID != pmids[i] ||
				got.SentAt == nil || !got.SentAt.Equal(at(i)) {
				t.Fatalf("delivery %d recorded %s by %q as %q at %v; want sent by p%d as %q at %v",
					i, got.Status, got.Provider, got.ProviderMessageID, got.SentAt, i, pmids[i], at(i))
			}
		}
	})
}
