// Package testdb gives tests a fresh, empty database on the servers of the machine:
// a new PostgreSQL schema or a new MySQL/MariaDB database per call, dropped at the end.
// An unreachable server fails the test: it is never skipped.
package testdb

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // registers "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
)

// PostgresURL is the server tests use: HERALD_TEST_POSTGRES or the local default.
func PostgresURL() string {
	if v := os.Getenv("HERALD_TEST_POSTGRES"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// MySQLURL is the server tests use: HERALD_TEST_MYSQL or the local default.
func MySQLURL() string {
	if v := os.Getenv("HERALD_TEST_MYSQL"); v != "" {
		return v
	}
	return "mysql://root@127.0.0.1:3306/test"
}

func name() string {
	return fmt.Sprintf("herald_t_%d_%06d", time.Now().Unix(), rand.IntN(1000000)) //nolint:gosec // a test name
}

// Postgres creates a schema and returns a Herald database URL whose search_path is it.
func Postgres(t testing.TB) string {
	t.Helper()
	base := PostgresURL()
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("postgres %s: %v", base, err)
	}
	defer func() { _ = db.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	schema := name()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("postgres at %s is required (set HERALD_TEST_POSTGRES): %v", base, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			_, _ = db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			_ = db.Close()
		}
	})
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// MySQL creates a database and returns a Herald database URL for it.
func MySQL(t testing.TB) string {
	t.Helper()
	base := MySQLURL()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := u.User.Password()
	dsn := fmt.Sprintf("%s:%s@tcp(%s)/", u.User.Username(), pass, u.Host)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("mysql %s: %v", u.Redacted(), err)
	}
	defer func() { _ = db.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dbName := name()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+dbName+" CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("mysql at %s is required (set HERALD_TEST_MYSQL): %v", u.Redacted(), err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("mysql", dsn)
		if err == nil {
			_, _ = db.ExecContext(context.Background(), "DROP DATABASE "+dbName)
			_ = db.Close()
		}
	})
	u.Path = "/" + dbName
	return u.String()
}
