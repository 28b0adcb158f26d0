package main

import (
	"runtime/debug"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/config"
)

// sqliteGCPercent is the garbage collector's target on the embedded SQLite database
// when GOGC is not set. There the database engine (modernc.org/sqlite, pure Go) runs
// in Herald's process, and its allocations are Herald's: a live heap of a few MB and
// tens of MB allocated a second, so Go's default of 100 collects dozens of times a
// second. At 400 the SQLite pipeline handles more events per second for 20–40 MB more
// resident memory; on PostgreSQL the same setting doubled the resident memory for no
// clear gain, so there Go's default stays (docs/performance.md). So it does in Kafka
// mode: the consumers' fetched messages make the live heap two to three times larger
// (26 MB against 10), and at 400 a 20,000-event burst reached 263–303 MB resident
// against 125–137 MB at Go's default, over the 256 MB a million-event run may use.
const sqliteGCPercent = 400

// tuneGC sets the garbage collector's target for the configuration c, unless the
// environment sets GOGC (which the runtime has applied already).
func tuneGC(getenv func(string) string, c config.Config) {
	if getenv("GOGC") != "" || len(c.KafkaBrokers) > 0 {
		return
	}
	if d, _, err := sqlstore.ParseURL(c.DB); err == nil && d == sqlstore.SQLite {
		debug.SetGCPercent(sqliteGCPercent)
	}
}
