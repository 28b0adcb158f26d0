package main

import (
	"runtime/debug"

	"github.com/heraldhq/herald/adapters/sqlstore"
)

// sqliteGCPercent is the garbage collector's target on the embedded SQLite database
// when GOGC is not set. There the database engine (modernc.org/sqlite, pure Go) runs
// in Herald's process, and its allocations are Herald's: a live heap of a few MB and
// tens of MB allocated a second, so Go's default of 100 collects dozens of times a
// second. At 400 the SQLite pipeline handles more events per second for 20–40 MB more
// resident memory; on PostgreSQL the same setting doubled the resident memory for no
// clear gain, so there Go's default stays (docs/performance.md).
const sqliteGCPercent = 400

// tuneGC sets the garbage collector's target for the database at dbURL, unless the
// environment sets GOGC (which the runtime has applied already).
func tuneGC(getenv func(string) string, dbURL string) {
	if getenv("GOGC") != "" {
		return
	}
	if d, _, err := sqlstore.ParseURL(dbURL); err == nil && d == sqlstore.SQLite {
		debug.SetGCPercent(sqliteGCPercent)
	}
}
