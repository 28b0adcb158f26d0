// Package redis keeps Herald's shared reliability state in Redis, for deployments
// that run several instances: delivery leases with done markers (in front of the SQL
// delivery store, which stays the record), provider rate limits (GCRA, via
// github.com/go-redis/redis_rate) and the per-recipient cap.
package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/handlers"
	"github.com/heraldhq/herald/notify"
)

// Open connects to the Redis at url (redis://host:port/db) and checks it answers.
func Open(ctx context.Context, url string) (*goredis.Client, error) {
	opts, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	c := goredis.NewClient(opts)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis at %s: %w", opts.Addr, err)
	}
	return c, nil
}

const done = "done"

// compareAndDelete deletes a lease only if the caller still owns it.
var compareAndDelete = goredis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// Leases is a handlers.DeliveryStore that takes each delivery's lease in Redis
// (SET NX with a TTL) before the SQL store, and keeps a done marker once the delivery
// is terminal: a redelivered message is then answered by Redis alone. The SQL store
// stays the record of every status.
type Leases struct {
	Client *goredis.Client
	Store  handlers.DeliveryStore
	// DoneFor is how long done markers are kept. Default 7 days.
	DoneFor time.Duration
	// Prefix of the keys. Default "herald:".
	Prefix string
}

func (l *Leases) key(id string) string {
	p := l.Prefix
	if p == "" {
		p = "herald:"
	}
	return p + "lease:" + id
}

func (l *Leases) doneFor() time.Duration {
	if l.DoneFor <= 0 {
		return 7 * 24 * time.Hour
	}
	return l.DoneFor
}

// Claim implements handlers.DeliveryStore.
func (l *Leases) Claim(ctx context.Context, id, owner string, lease time.Duration) (sqlstore.Claim, error) {
	k := l.key(id)
	ok, err := l.Client.SetNX(ctx, k, owner, lease).Result()
	if err != nil {
		return sqlstore.Claim{}, fmt.Errorf("redis lease of %s: %w", id, err)
	}
	if !ok {
		v, err := l.Client.Get(ctx, k).Result()
		if errors.Is(err, goredis.Nil) { // expired in between: try again later
			return sqlstore.Claim{State: sqlstore.ClaimBusy, LeaseUntil: time.Now()}, nil
		}
		if err != nil {
			return sqlstore.Claim{}, fmt.Errorf("redis lease of %s: %w", id, err)
		}
		if v == done {
			return sqlstore.Claim{State: sqlstore.ClaimDone}, nil
		}
		ttl, err := l.Client.PTTL(ctx, k).Result()
		if err != nil {
			return sqlstore.Claim{}, fmt.Errorf("redis lease of %s: %w", id, err)
		}
		return sqlstore.Claim{State: sqlstore.ClaimBusy, LeaseUntil: time.Now().Add(max(ttl, 0))}, nil
	}
	c, err := l.Store.Claim(ctx, id, owner, lease)
	switch {
	case err != nil:
		_ = compareAndDelete.Run(ctx, l.Client, []string{k}, owner).Err()
		return c, err
	case c.State == sqlstore.ClaimDone:
		_ = l.Client.Set(ctx, k, done, l.doneFor()).Err()
	case c.State == sqlstore.ClaimBusy: // a SQL lease without a Redis one (Redis was flushed)
		_ = compareAndDelete.Run(ctx, l.Client, []string{k}, owner).Err()
	}
	return c, nil
}

// Release implements handlers.DeliveryStore.
func (l *Leases) Release(ctx context.Context, id, owner, reason string, counted bool) error {
	if err := l.Store.Release(ctx, id, owner, reason, counted); err != nil {
		return err
	}
	if err := compareAndDelete.Run(ctx, l.Client, []string{l.key(id)}, owner).Err(); err != nil {
		return fmt.Errorf("redis release of %s: %w", id, err)
	}
	return nil
}

// MarkSent implements handlers.DeliveryStore.
func (l *Leases) MarkSent(ctx context.Context, id string, r notify.Receipt, at time.Time) error {
	if err := l.Store.MarkSent(ctx, id, r, at); err != nil {
		return err
	}
	return l.Client.Set(ctx, l.key(id), done, l.doneFor()).Err()
}

// IDFor asks the wrapped store.
func (l *Leases) IDFor(ctx context.Context, eventID string, ch notify.Channel, address notify.Address) (string, error) {
	return l.Store.IDFor(ctx, eventID, ch, address)
}

// MarkEnded implements handlers.DeliveryStore.
func (l *Leases) MarkEnded(ctx context.Context, id string, st notify.Status, reason string) error {
	if err := l.Store.MarkEnded(ctx, id, st, reason); err != nil {
		return err
	}
	if st == notify.StatusPoisoned { // replayable: no done marker may block the replay
		return l.Client.Del(ctx, l.key(id)).Err()
	}
	return l.Client.Set(ctx, l.key(id), done, l.doneFor()).Err()
}

// RateLimiter paces one provider across every instance sharing the Redis.
type RateLimiter struct {
	limiter *redis_rate.Limiter
	key     string
	limit   redis_rate.Limit
}

// NewRateLimiter allows perSecond sends per second under name.
func NewRateLimiter(c *goredis.Client, name string, perSecond int) *RateLimiter {
	return &RateLimiter{limiter: redis_rate.NewLimiter(c), key: "herald:rate:" + name,
		limit: redis_rate.Limit{Rate: perSecond, Burst: 1, Period: time.Second}}
}

// Wait implements handlers.RateLimiter.
func (r *RateLimiter) Wait(ctx context.Context) error {
	for {
		res, err := r.limiter.Allow(ctx, r.key, r.limit)
		if err != nil {
			return fmt.Errorf("redis rate limit: %w", err)
		}
		if res.Allowed > 0 {
			return nil
		}
		t := time.NewTimer(res.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Cap is the per-recipient cap kept in Redis: fixed windows, addresses hashed.
type Cap struct {
	Client *goredis.Client
	Max    int
	Window time.Duration
}

// Take implements handlers.RecipientCap.
func (c Cap) Take(ctx context.Context, address string) (bool, time.Time, error) {
	start := time.Now().Truncate(c.Window)
	k := fmt.Sprintf("herald:cap:%s:%d", sqlstore.AddressKey(address), start.Unix())
	pipe := c.Client.TxPipeline()
	incr := pipe.Incr(ctx, k)
	pipe.Expire(ctx, k, 2*c.Window)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, time.Time{}, fmt.Errorf("redis recipient cap: %w", err)
	}
	return incr.Val() <= int64(c.Max), start.Add(c.Window), nil
}
