package sqlstore

import (
	"errors"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// Conflict reports whether err ended a transaction because it collided with another
// one: a deadlock, a serialization failure, a lock wait that timed out, or SQLite's
// database-is-busy. The database wrote none of it (InTx rolls back on any error), so
// running the whole transaction again is safe; it is what a banking core does when
// its outbox INSERT meets one (docs/outbox.md).
func Conflict(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// serialization_failure, deadlock_detected, lock_not_available
		return pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "55P03"
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		// ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
		return me.Number == 1213 || me.Number == 1205
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		// SQLITE_BUSY, SQLITE_LOCKED and their extended codes
		c := se.Code() & 0xff
		return c == 5 || c == 6
	}
	return false
}
