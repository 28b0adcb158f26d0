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
	if fastUnmarshal(data, v) == nil {
		return nil
	}
	// Invalid input, or a case goccy/go-json does not handle: encoding/json decides,
	// and gives the error (v is decoded again from the start).
	return json.Unmarshal(data, v)
}

func fastUnmarshal(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("goccy/go-json: %v", r)
		}
	}()
	return gojson.Unmarshal(data, v)
}

// Marshal encodes v as json.Marshal does (with HTML characters escaped).
func Marshal(v any) ([]byte, error) {
	b, err := fastMarshal(v)
	if err == nil {
		return b, nil
	}
	return json.Marshal(v)
}

func fastMarshal(v any) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("goccy/go-json: %v", r)
		}
	}()
	return gojson.Marshal(v)
}
