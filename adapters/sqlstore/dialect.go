package sqlstore

import (
	"strconv"
	"strings"
)

// q adapts a query written with ? placeholders and "double-quoted" identifiers to the
// dialect: $n placeholders on PostgreSQL, `backticks` on MySQL. Queries never contain
// literal ? or " characters for this reason.
func (db *DB) q(query string) string {
	switch db.Dialect {
	case Postgres:
		var b strings.Builder
		n := 0
		for i := 0; i < len(query); i++ {
			if query[i] == '?' {
				n++
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(n))
				continue
			}
			b.WriteByte(query[i])
		}
		return b.String()
	case MySQL:
		return strings.ReplaceAll(query, `"`, "`")
	}
	return query
}

// onConflictNothing ends an INSERT so that a row whose key exists is left alone.
func (db *DB) onConflictNothing(key string) string {
	if db.Dialect == MySQL {
		return " ON DUPLICATE KEY UPDATE " + key + " = " + key
	}
	return " ON CONFLICT (" + key + ") DO NOTHING"
}

// onConflictUpdate ends an INSERT so that a row whose key exists takes the new values
// of cols.
func (db *DB) onConflictUpdate(key string, cols ...string) string {
	sets := make([]string, len(cols))
	for i, c := range cols {
		if db.Dialect == MySQL {
			sets[i] = c + " = VALUES(" + c + ")"
		} else {
			sets[i] = c + " = excluded." + c
		}
	}
	if db.Dialect == MySQL {
		return " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
	}
	return " ON CONFLICT (" + key + ") DO UPDATE SET " + strings.Join(sets, ", ")
}

// likePrefix returns a LIKE pattern matching strings that start with prefix.
func likePrefix(prefix string) string {
	r := strings.NewReplacer("!", "!!", "%", "!%", "_", "!_")
	return r.Replace(prefix) + "%"
}

// Rebind adapts a query written with ? placeholders and "double-quoted" identifiers to
// the database's dialect.
func (db *DB) Rebind(query string) string { return db.q(query) }
