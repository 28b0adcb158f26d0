// Package jsonx decodes and encodes the JSON of Herald's pipeline (events, delivery
// messages) with github.com/goccy/go-json, which does it about four times faster than
// encoding/json (docs/performance.md), and keeps encoding/json's answer wherever the
// two could differ: input that goccy/go-json rejects, or that makes it panic, is decoded
// again by encoding/json, so an invalid event is refused with encoding/json's error.
package jsonx

import (
	"encoding/json"
	"fmt"

	gojson "github.com/goccy/go-json"
)

// Unmarshal decodes data into v as json.Unmarshal does.
func Unmarshal(data []byte, v any) error {
	if _, err := fast(func() (struct{}, error) { return struct{}{}, gojson.Unmarshal(data, v) }); err == nil {
		return nil
	}
	// Invalid input, or a case goccy/go-json does not handle: encoding/json decides,
	// and gives the error (v is decoded again from the start).
	return json.Unmarshal(data, v)
}

// Marshal encodes v as json.Marshal does (with HTML characters escaped).
func Marshal(v any) ([]byte, error) {
	if b, err := fast(func() ([]byte, error) { return gojson.Marshal(v) }); err == nil {
		return b, nil
	}
	return json.Marshal(v)
}

// fast runs a goccy/go-json call, a panic in it turned into an error.
func fast[T any](f func() (T, error)) (out T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			out, err = zero, fmt.Errorf("goccy/go-json: %v", r)
		}
	}()
	return f()
}
