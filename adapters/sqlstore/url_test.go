package sqlstore_test

import (
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/heraldhq/herald/adapters/sqlstore"
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
