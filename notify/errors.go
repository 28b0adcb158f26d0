package notify

import (
	"errors"
	"fmt"
	"strings"
)

// Class says what a failure means for the message that caused it.
type Class int

const (
	// ClassTransient failures may succeed when retried: timeouts, 5xx, throttling.
	ClassTransient Class = iota
	// ClassPermanent failures will not succeed for this delivery: an invalid address,
	// an unsubscribed user, rejected content. The delivery fails with the reason.
	ClassPermanent
	// ClassPoison failures come from input that can never be processed: undecodable or
	// invalid payloads. The message goes to the poison queue with the reason.
	ClassPoison
)

func (c Class) String() string {
	switch c {
	case ClassPermanent:
		return "permanent"
	case ClassPoison:
		return "poison"
	default:
		return "transient"
	}
}

// ClassifiedError carries a failure class through wrapping.
type ClassifiedError struct {
	Class Class
	Err   error
}

func (e *ClassifiedError) Error() string { return e.Err.Error() }
func (e *ClassifiedError) Unwrap() error { return e.Err }

// Permanent marks err as a permanent failure.
func Permanent(err error) error { return &ClassifiedError{Class: ClassPermanent, Err: err} }

// Poison marks err as caused by input that can never be processed.
func Poison(err error) error { return &ClassifiedError{Class: ClassPoison, Err: err} }

// ClassOf returns the class of err; unclassified errors are transient.
func ClassOf(err error) Class {
	var ce *ClassifiedError
	if errors.As(err, &ce) {
		return ce.Class
	}
	return ClassTransient
}

// FieldError is one invalid field and the reason.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// ValidationError lists every invalid field of an input.
type ValidationError struct {
	Fields []FieldError
}

// Add records a problem with field.
func (v *ValidationError) Add(field, reason string) {
	v.Fields = append(v.Fields, FieldError{Field: field, Reason: reason})
}

// OrNil returns v as an error, or nil when no field was invalid.
func (v *ValidationError) OrNil() error {
	if len(v.Fields) == 0 {
		return nil
	}
	return v
}

func (v *ValidationError) Error() string {
	parts := make([]string, len(v.Fields))
	for i, f := range v.Fields {
		parts[i] = fmt.Sprintf("%s: %s", f.Field, f.Reason)
	}
	return "invalid input: " + strings.Join(parts, "; ")
}
