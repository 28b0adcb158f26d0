package wlog_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/heraldhq/herald/internal/wlog"
)

func logger(level slog.Level) (*bytes.Buffer, watermill.LoggerAdapter) {
	var b bytes.Buffer
	return &b, wlog.New(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: level})))
}

func TestDisabledLevelsCostNothing(t *testing.T) {
	b, l := logger(slog.LevelInfo)
	fields := watermill.LogFields{"message_uuid": "m1", "topic": "herald_outbox"}
	allocs := testing.AllocsPerRun(100, func() {
		l.Trace("Received message", fields)
		l.Debug("Message acked", fields)
		l.Info("Starting handler", fields) // Watermill's info is Herald's debug
	})
	if allocs != 0 {
		t.Errorf("%.0f allocations a call below the level, want 0", allocs)
	}
	if b.Len() != 0 {
		t.Errorf("logged below the level:\n%s", b)
	}
	l.Error("Handler failed", nil, fields)
	if !strings.Contains(b.String(), "level=ERROR") || !strings.Contains(b.String(), "message_uuid=m1") {
		t.Errorf("error not logged with its fields:\n%s", b)
	}
}

func TestEnabledLevelsAreLogged(t *testing.T) {
	b, l := logger(watermill.LevelTrace)
	l = l.With(watermill.LogFields{"handler": "fanout"})
	l.Trace("Received message", watermill.LogFields{"message_uuid": "m1"})
	l.Info("Starting handler", nil)
	out := b.String()
	for _, want := range []string{`level=DEBUG-4 msg="Received message" handler=fanout message_uuid=m1`,
		`level=DEBUG msg="Starting handler" handler=fanout`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
