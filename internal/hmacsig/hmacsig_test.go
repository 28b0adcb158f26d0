package hmacsig_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hmacsig"
)

func TestCheck(t *testing.T) {
	body := []byte(`{"id":1}`)
	sign := func(ts int64) string { return hmacsig.Hex("s3cret", ts, body) }
	now := time.Now().Unix()
	good := strconv.FormatInt(now, 10)
	for _, c := range []struct {
		name, ts, sig string
		want          error
	}{
		{"valid", good, sign(now), nil},
		{"future within tolerance", strconv.FormatInt(now+30, 10), sign(now + 30), nil},
		{"not a number", "yesterday", sign(now), hmacsig.ErrTimestamp},
		{"too old", strconv.FormatInt(now-600, 10), sign(now - 600), hmacsig.ErrStale},
		{"too far ahead", strconv.FormatInt(now+600, 10), sign(now + 600), hmacsig.ErrStale},
		{"other secret", good, hmacsig.Hex("other", now, body), hmacsig.ErrSignature},
		{"signature of another time", good, sign(now - 1), hmacsig.ErrSignature},
	} {
		if err := hmacsig.Check(c.ts, c.sig, time.Minute, sign); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// The scheme, computed independently: HMAC-SHA256 over "<ts>.<body>", hex.
	mac := hmac.New(sha256.New, []byte("key"))
	mac.Write([]byte("1.x"))
	if got, want := hmacsig.Hex("key", 1, []byte("x")), hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("Hex = %s, want %s", got, want)
	}
}
