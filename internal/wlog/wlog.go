// Package wlog adapts log/slog to Watermill's logger interface.
package wlog

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// Logger is Watermill's slog adapter with Watermill's info messages logged at debug
// level, except that a message below the logger's level costs nothing. Watermill
// logs every message it handles at trace level, and its adapter turns the fields into
// attributes before slog finds the level disabled: about 1.4% of Herald's CPU in a
// catch-up (docs/performance.md, Optimisations, session 23).
type Logger struct {
	watermill.LoggerAdapter
	log *slog.Logger
}

// infoLevel is the level Watermill's info messages are logged at.
const infoLevel = slog.LevelDebug

// New returns the adapter for logger.
func New(logger *slog.Logger) Logger {
	if logger == nil {
		logger = slog.Default()
	}
	return Logger{LoggerAdapter: watermill.NewSlogLoggerWithLevelMapping(logger,
		map[slog.Level]slog.Level{slog.LevelInfo: infoLevel}), log: logger}
}

func (l Logger) enabled(level slog.Level) bool { return l.log.Enabled(context.Background(), level) }

// Info logs at infoLevel.
func (l Logger) Info(msg string, fields watermill.LogFields) {
	if l.enabled(infoLevel) {
		l.LoggerAdapter.Info(msg, fields)
	}
}

// Debug logs at debug level.
func (l Logger) Debug(msg string, fields watermill.LogFields) {
	if l.enabled(slog.LevelDebug) {
		l.LoggerAdapter.Debug(msg, fields)
	}
}

// Trace logs at Watermill's trace level, below debug.
func (l Logger) Trace(msg string, fields watermill.LogFields) {
	if l.enabled(watermill.LevelTrace) {
		l.LoggerAdapter.Trace(msg, fields)
	}
}

// With returns the adapter with fields added to every message.
func (l Logger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return Logger{LoggerAdapter: l.LoggerAdapter.With(fields), log: l.log}
}
