package main

import (
	"runtime/debug"

	"github.com/heraldhq/herald/config"
)

// sqlGCPercent is the garbage collector's target in SQL mode when GOGC is not set.
// Herald's live heap is small (a few MB on SQLite, ~10 MB on PostgreSQL and MySQL)
// while its pipeline allocates tens of MB a second, so at Go's default of 100 it
// collects dozens of times a second and the collection takes a fifth of the process's
// CPU. On SQLite the database engine (modernc.org/sqlite, pure Go) allocates in
// Herald's process too. At 400 every database handles more events per second for
// 30–60 MB more resident memory (docs/performance.md: SQLite since session 6,
// PostgreSQL and MySQL since session 17, when a 1,000,000-event PostgreSQL run stayed
// far under the 256 MB target). Kafka mode keeps Go's default: the consumers' fetched
// messages make the live heap two to three times larger (26 MB against 10), and at 400
// a 20,000-event burst reached 263–303 MB resident against 125–137 MB at Go's default,
// over the 256 MB a million-event run may use.
const sqlGCPercent = 400

// tuneGC sets the garbage collector's target for the configuration c, unless the
// environment sets GOGC (which the runtime has applied already).
func tuneGC(getenv func(string) string, c config.Config) {
	if getenv("GOGC") != "" || len(c.KafkaBrokers) > 0 {
		return
	}
	debug.SetGCPercent(sqlGCPercent)
}
