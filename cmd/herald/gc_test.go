package main

import (
	"runtime/debug"
	"testing"

	"github.com/heraldhq/herald/config"
)

func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		name, gogc, db string
		kafka          []string
		want           int
	}{
		{"SQLite without GOGC", "", "sqlite://herald.db", nil, sqlGCPercent},
		{"PostgreSQL without GOGC", "", "postgres://h@db:5432/herald", nil, sqlGCPercent},
		{"MySQL without GOGC", "", "mysql://root@db:3306/herald", nil, sqlGCPercent},
		{"SQLite in Kafka mode", "", "sqlite://herald.db", []string{"kafka:9092"}, 100},
		{"PostgreSQL in Kafka mode", "", "postgres://h@db:5432/herald", []string{"kafka:9092"}, 100},
		// GOGC set: the runtime applied it at start; Herald leaves it alone.
		{"SQLite with GOGC=50", "50", "sqlite://herald.db", nil, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			env["GOGC"] = tc.gogc
			if tc.gogc != "" {
				debug.SetGCPercent(50)
			}
			tuneGC(getenv, config.Config{DB: tc.db, KafkaBrokers: tc.kafka})
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Fatalf("the runtime's target is %d, want %d", got, tc.want)
			}
		})
	}
}
