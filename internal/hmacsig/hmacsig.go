// Package hmacsig signs and checks timestamped bodies: HMAC-SHA256 over
// "<unix seconds>.<body>", the scheme of Herald's webhooks and of SMS gateway receipts.
package hmacsig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// Hex returns hex(HMAC-SHA256(secret, ts + "." + body)).
func Hex(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// What Check found wrong.
var (
	ErrTimestamp = errors.New("bad timestamp")
	ErrStale     = errors.New("timestamp outside the tolerance")
	ErrSignature = errors.New("signature mismatch")
)

// Check parses timestamp (Unix seconds), requires it within tolerance of now either
// way (replay, clock skew) and signature to equal sign(ts), compared in constant time.
func Check(timestamp, signature string, tolerance time.Duration, sign func(ts int64) string) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	if d := time.Since(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	if !hmac.Equal([]byte(sign(ts)), []byte(signature)) {
		return ErrSignature
	}
	return nil
}
