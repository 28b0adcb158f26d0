package middleware

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
)

func TestGrowStackPassesThrough(t *testing.T) {
	produced := []*message.Message{message.NewMessage("out", nil)}
	boom := errors.New("boom")
	var seen *message.Message
	h := GrowStack(func(m *message.Message) ([]*message.Message, error) {
		seen = m
		return produced, boom
	})
	in := message.NewMessage("in", nil)
	out, err := h(in)
	if seen != in || len(out) != 1 || out[0] != produced[0] || !errors.Is(err, boom) {
		t.Fatalf("GrowStack changed the call: handler saw %v, returned %v, %v", seen, out, err)
	}
}

// deep uses about depth KB of stack, as a handler's middleware chain, decode and
// driver calls do.
//
//go:noinline
func deep(depth int) byte {
	var buf [1 << 10]byte
	buf[depth%len(buf)] = byte(depth)
	if depth == 0 {
		return buf[0]
	}
	return deep(depth-1) + buf[depth%len(buf)]
}

// BenchmarkGrowStack runs a handler that needs about 12 KB of stack in a new
// goroutine for each message, as Watermill's router does, with and without GrowStack.
func BenchmarkGrowStack(b *testing.B) {
	handler := func(*message.Message) ([]*message.Message, error) { _ = deep(12); return nil, nil }
	for _, c := range []struct {
		name string
		h    message.HandlerFunc
	}{{"plain", handler}, {"grown", GrowStack(handler)}} {
		b.Run(c.name, func(b *testing.B) {
			msg := message.NewMessage("m", nil)
			done := make(chan struct{})
			for b.Loop() {
				go func() {
					_, _ = c.h(msg)
					done <- struct{}{}
				}()
				<-done
			}
		})
	}
}
