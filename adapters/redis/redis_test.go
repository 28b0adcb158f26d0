package redis_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/redis"
	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
)

// redisURL is the test Redis; tests fail (never skip) when it is unreachable.
func redisURL() string {
	if u := os.Getenv("HERALD_TEST_REDIS"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// counting counts claims that reach the SQL store.
type counting struct {
	*sqlstore.Deliveries
	claims int
}

func (c *counting) Claim(ctx context.Context, id, owner string, lease time.Duration) (sqlstore.Claim, error) {
	c.claims++
	return c.Deliveries.Claim(ctx, id, owner, lease)
}

func TestLeasesInRedis(t *testing.T) {
	ctx := context.Background()
	rc, err := redis.Open(ctx, redisURL())
	if err != nil {
		t.Fatalf("a Redis is required for this test: %v", err)
	}
	defer rc.Close()
	db, err := sqlstore.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, []string{"sms"}); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("dlv_test_%d", time.Now().UnixNano())
	if err := db.Deliveries().InsertQueued(ctx, db.W, []notify.Delivery{{ID: id, EventID: "e", EventType: "x",
		Channel: notify.ChannelSMS, Lane: notify.LaneNormal, Address: "+8613800138000", OccurredAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	store := &counting{Deliveries: db.Deliveries()}
	l := &redis.Leases{Client: rc, Store: store, Prefix: "herald-test:"}

	c, err := l.Claim(ctx, id, "w1", time.Minute)
	if err != nil || c.State != sqlstore.Claimed || c.Attempts != 1 {
		t.Fatalf("first claim: %+v %v", c, err)
	}
	c, err = l.Claim(ctx, id, "w2", time.Minute)
	if err != nil || c.State != sqlstore.ClaimBusy || time.Until(c.LeaseUntil) < 50*time.Second {
		t.Fatalf("second worker: %+v %v", c, err)
	}
	if store.claims != 1 {
		t.Fatalf("a busy lease must be answered by Redis, SQL saw %d claims", store.claims)
	}
	// A failure releases the lease in both places; the next worker gets it.
	if err := l.Release(ctx, id, "w1", "503", true); err != nil {
		t.Fatal(err)
	}
	if c, err = l.Claim(ctx, id, "w2", time.Minute); err != nil || c.State != sqlstore.Claimed || c.Attempts != 2 {
		t.Fatalf("after release: %+v %v", c, err)
	}
	if err := l.MarkSent(ctx, id, notify.Receipt{Provider: "p"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if c, err = l.Claim(ctx, id, "w3", time.Minute); err != nil || c.State != sqlstore.ClaimDone || store.claims != 2 {
		t.Fatalf("after sent: %+v %v (SQL claims %d, want 2)", c, err, store.claims)
	}
	_ = rc.Del(ctx, "herald-test:lease:"+id)
}

func TestCapInRedis(t *testing.T) {
	ctx := context.Background()
	rc, err := redis.Open(ctx, redisURL())
	if err != nil {
		t.Fatalf("a Redis is required for this test: %v", err)
	}
	defer rc.Close()
	c := redis.Cap{Client: rc, Max: 2, Window: time.Hour}
	addr := fmt.Sprintf("+86138%08d", time.Now().UnixNano()%100000000)
	for i, want := range []bool{true, true, false} {
		ok, next, err := c.Take(ctx, addr)
		if err != nil || ok != want || time.Until(next) > time.Hour {
			t.Fatalf("take %d: %v %s %v", i, ok, next, err)
		}
	}
}

// The shared limit holds across limiters (instances): two limiters of one name
// together wait for the one rate.
func TestRateLimiterIsShared(t *testing.T) {
	ctx := context.Background()
	rc, err := redis.Open(ctx, redisURL())
	if err != nil {
		t.Fatalf("a Redis is required for this test: %v", err)
	}
	defer rc.Close()
	name := fmt.Sprintf("test-%d", time.Now().UnixNano())
	a, b := redis.NewRateLimiter(rc, name, 20), redis.NewRateLimiter(rc, name, 20)
	start := time.Now()
	for i := 0; i < 11; i++ {
		for _, l := range []*redis.RateLimiter{a, b} {
			if err := l.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 22 permits at 20/s with a burst of 1 cannot be had in less than 21/20 s.
	if d := time.Since(start); d < 1000*time.Millisecond {
		t.Fatalf("22 permits in %s: the limit is not shared", d)
	}
}
