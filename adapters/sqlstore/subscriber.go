package sqlstore

import (
	"context"
	"sync"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Subscriber is watermill-sql's subscriber whose Close returns only after every
// channel it handed out is closed. (In watermill-sql v4.0.0, Close can return a moment
// before the channel of a subscription is closed: the subscription's wait group is
// released before the channel is.)
type Subscriber struct {
	*wsql.Subscriber
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func newSubscriber(s *wsql.Subscriber) *Subscriber {
	return &Subscriber{Subscriber: s, closing: make(chan struct{})}
}

// Subscribe subscribes to topic.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := s.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		for m := range in {
			select {
			case out <- m:
			case <-s.closing:
				// The inner subscriber sees the close too and will not wait for an ack.
			}
		}
	}()
	return out, nil
}

// Close stops every subscription and waits until their channels are closed.
func (s *Subscriber) Close() error {
	s.once.Do(func() { close(s.closing) })
	err := s.Subscriber.Close()
	s.wg.Wait()
	return err
}
