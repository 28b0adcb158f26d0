package server

import (
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/heraldhq/herald/notify"
)

// Problem is an RFC 9457 problem detail, with Herald's field-level errors.
type Problem struct {
	Type   string              `json:"type"`
	Title  string              `json:"title"`
	Status int                 `json:"status"`
	Detail string              `json:"detail,omitempty"`
	Errors []notify.FieldError `json:"errors,omitempty"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func problem(status int, detail string, fields ...notify.FieldError) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Errors: fields}
}

func invalid(err error) *Problem {
	var v *notify.ValidationError
	if errors.As(err, &v) {
		return problem(fiber.StatusUnprocessableEntity, "the request has invalid fields", v.Fields...)
	}
	return problem(fiber.StatusUnprocessableEntity, err.Error())
}

func badField(field, reason string) *Problem {
	return problem(fiber.StatusBadRequest, "invalid query parameter", notify.FieldError{Field: field, Reason: reason})
}

// errorHandler writes every error as application/problem+json.
func errorHandler(log func(msg string, args ...any)) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		var p *Problem
		var fe *fiber.Error
		switch {
		case errors.As(err, &p):
		case errors.As(err, &fe):
			p = problem(fe.Code, fe.Message)
		default:
			log("request failed", "method", c.Method(), "path", c.Path(), "error", err)
			p = problem(fiber.StatusInternalServerError, "internal error; see the server log")
		}
		c.Set(fiber.HeaderContentType, "application/problem+json")
		return c.Status(p.Status).JSON(p, "application/problem+json")
	}
}
