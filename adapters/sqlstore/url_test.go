package sqlstore_test

import (
	"context"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/internal/testdb"
)

// TestMySQLURL: a MySQL URL becomes a driver DSN with parameters interpolated by the
// driver (one round trip per statement instead of prepare, execute and close), which a
// URL parameter can turn off; other driver options and session variables pass through.
func TestMySQLURL(t *testing.T) {
	for _, c := range []struct {
		url         string
		interpolate bool
		tls         string
		params      map[string]string
	}{
		{"mysql://root@127.0.0.1:3306/herald", true, "", nil},
		{"mariadb://u:p%40ss@db:3306/herald?interpolateParams=false&tls=skip-verify&time_zone=%27%2B00:00%27", false, "skip-verify",
			map[string]string{"time_zone": "'+00:00'"}},
	} {
		d, dsn, err := sqlstore.ParseURL(c.url)
		if err != nil || d != sqlstore.MySQL {
			t.Fatalf("%s: %v %v", c.url, d, err)
		}
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		if cfg.InterpolateParams != c.interpolate || cfg.TLSConfig != c.tls || cfg.MultiStatements || cfg.ParseTime {
			t.Fatalf("%s: interpolate %v tls %q multi %v parseTime %v", dsn, cfg.InterpolateParams, cfg.TLSConfig, cfg.MultiStatements, cfg.ParseTime)
		}
		if len(cfg.Params) != len(c.params) || cfg.Params["time_zone"] != c.params["time_zone"] {
			t.Fatalf("%s: session variables %v", dsn, cfg.Params)
		}
	}
}

// TestPostgresURLPlansEachExecution: Herald's PostgreSQL connections plan each execution
// of a prepared statement (plan_cache_mode) and compile no plan (jit), unless the URL
// chooses.
func TestPostgresURLPlansEachExecution(t *testing.T) {
	for url, want := range map[string][2]string{
		"postgres://h:5432/db?sslmode=disable":                                      {"force_custom_plan", "off"},
		"postgresql://u:p@h/db?plan_cache_mode=auto&search_path=s&jit=on":           {"auto", "on"},
		"postgres://h/db?application_name=herald&plan_cache_mode=force_custom_plan": {"force_custom_plan", "off"},
	} {
		d, dsn, err := sqlstore.ParseURL(url)
		if err != nil || d != sqlstore.Postgres {
			t.Fatalf("%s: %v %v", url, d, err)
		}
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		if got := [2]string{cfg.RuntimeParams["plan_cache_mode"], cfg.RuntimeParams["jit"]}; got != want {
			t.Fatalf("%s: plan_cache_mode and jit %q, want %q", url, got, want)
		}
	}
	db, err := sqlstore.Open(context.Background(), testdb.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	var mode string
	if err := db.W.QueryRow(`SHOW plan_cache_mode`).Scan(&mode); err != nil || mode != "force_custom_plan" {
		t.Fatalf("a Herald connection plans with %q (%v)", mode, err)
	}
	if err := db.W.QueryRow(`SHOW jit`).Scan(&mode); err != nil || mode != "off" {
		t.Fatalf("a Herald connection has jit %q (%v)", mode, err)
	}
}

// TestDefaultCommitters: two group-commit transactions at once on PostgreSQL and MySQL
// (each one round trip), at most half the pool, or what the options say.
func TestDefaultCommitters(t *testing.T) {
	t.Parallel()
	pg, my := testdb.Postgres(t), testdb.MySQL(t)
	for _, c := range []struct {
		url  string
		opts sqlstore.Options
		want int
	}{
		{pg, sqlstore.Options{}, 2},
		{pg, sqlstore.Options{MaxConns: 2}, 1},
		{pg, sqlstore.Options{Committers: 3}, 3},
		{my, sqlstore.Options{}, 2},
		{my, sqlstore.Options{MaxConns: 2}, 1},
		{my, sqlstore.Options{Committers: 6, MaxConns: 6}, 3},
	} {
		db, err := sqlstore.OpenWith(context.Background(), c.url, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := sqlstore.Committers(db); got != c.want {
			t.Errorf("%s with %+v: %d committers, want %d", db.Location, c.opts, got, c.want)
		}
		_ = db.Close()
	}
}
