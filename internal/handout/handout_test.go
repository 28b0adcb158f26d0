package handout_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldhq/herald/internal/handout"
)

func batch(n, keys int) ([]*message.Message, []string) {
	msgs, ks := make([]*message.Message, n), make([]string, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(fmt.Sprint(i), nil)
		if keys > 0 && i%7 != 0 { // every seventh message has no key
			ks[i] = fmt.Sprintf("k%d", i%keys)
		}
	}
	return msgs, ks
}

// TestDispatchOrderAndLimits hands out a batch to a handler that acks after a random
// pause, nacking some messages once: each key's messages come one at a time and in
// batch order, never more than Concurrency are out, and everything is acked.
func TestDispatchOrderAndLimits(t *testing.T) {
	for _, c := range []struct{ n, keys, concurrency int }{{200, 5, 16}, {200, 0, 16}, {50, 3, 1}, {300, 40, 250}} {
		t.Run(fmt.Sprintf("n=%d,keys=%d,concurrency=%d", c.n, c.keys, c.concurrency), func(t *testing.T) {
			msgs, keys := batch(c.n, c.keys)
			key := map[string]string{}
			for i, m := range msgs {
				key[m.UUID] = keys[i]
			}
			out := make(chan *message.Message)
			done := make(chan int, 1)
			go func() {
				done <- handout.Dispatch(context.Background(), handout.Config{Concurrency: c.concurrency, ResendInterval: time.Millisecond}, msgs, keys, out)
				close(out)
			}()
			var mu sync.Mutex
			inflight, most := 0, 0
			busy := map[string]bool{}
			lastOf := map[string]int{}
			nacked := map[string]bool{}
			var wg sync.WaitGroup
			for m := range out {
				k := key[m.UUID]
				var i int
				_, _ = fmt.Sscan(m.UUID, &i)
				mu.Lock()
				inflight++
				most = max(most, inflight)
				if k != "" {
					if busy[k] {
						t.Errorf("message %d handed out while another of %s was out", i, k)
					}
					if prev, ok := lastOf[k]; ok && prev > i {
						t.Errorf("key %s: message %d after %d", k, i, prev)
					}
					busy[k], lastOf[k] = true, i
				}
				nack := !nacked[m.UUID] && rand.IntN(10) == 0
				nacked[m.UUID] = true
				mu.Unlock()
				wg.Go(func() {
					time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
					mu.Lock()
					inflight--
					busy[k] = false
					mu.Unlock()
					if nack {
						m.Nack()
					} else {
						m.Ack()
					}
				})
			}
			wg.Wait()
			if n := <-done; n != c.n {
				t.Fatalf("%d of %d acked", n, c.n)
			}
			if most > c.concurrency {
				t.Fatalf("%d out at once, limit %d", most, c.concurrency)
			}
			if c.concurrency > 1 && most < 2 {
				t.Fatalf("never more than one out at once")
			}
		})
	}
}

// TestDispatchStopsWhenGivenUp: once the context ends, no more messages are handed out
// and the count is the acked prefix.
func TestDispatchStopsWhenGivenUp(t *testing.T) {
	msgs, keys := batch(20, 0)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan *message.Message)
	done := make(chan int)
	go func() { done <- handout.Dispatch(ctx, handout.Config{Concurrency: 1}, msgs, keys, out) }()
	for i := 0; i < 3; i++ {
		(<-out).Ack()
	}
	<-out // the fourth is out and never acked
	cancel()
	if n := <-done; n != 3 {
		t.Fatalf("acked prefix %d, want 3", n)
	}
}
