package notify

import (
	"errors"
	"fmt"
	"strings"
	"time"
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
	// ClassDeferred means the message was not attempted and should come back later
	// without counting an attempt: the provider's circuit breaker is open, a throttle
	// is full, or another worker holds the delivery's lease.
	ClassDeferred
)

func (c Class) String() string {
	switch c {
	case ClassPermanent:
		return "permanent"
	case ClassPoison:
		return "poison"
	case ClassDeferred:
		return "deferred"
	default:
		return "transient"
	}
}

// ClassifiedError carries a failure class through wrapping.
type ClassifiedError struct {
	Class Class
	Err   error
	// After, when set, is how long to wait before trying again (a provider's
	// Retry-After, the rest of a breaker's open time).
	After time.Duration
}

func (e *ClassifiedError) Error() string { return e.Err.Error() }
func (e *ClassifiedError) Unwrap() error { return e.Err }

// Permanent marks err as a permanent failure.
func Permanent(err error) error { return &ClassifiedError{Class: ClassPermanent, Err: err} }

// Poison marks err as caused by input that can never be processed.
func Poison(err error) error { return &ClassifiedError{Class: ClassPoison, Err: err} }

// Defer marks err as a reason to try again after d without counting an attempt.
func Defer(err error, d time.Duration) error {
	return &ClassifiedError{Class: ClassDeferred, Err: err, After: d}
}

// RetryAfter marks err as transient with the wait the provider asked for.
func RetryAfter(err error, d time.Duration) error {
	return &ClassifiedError{Class: ClassTransient, Err: err, After: d}
}

// AfterOf returns the wait carried by err, or 0.
func AfterOf(err error) time.Duration {
	var ce *ClassifiedError
	if errors.As(err, &ce) {
		return ce.After
	}
	return 0
}

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
