// Package server is Herald's HTTP API (Fiber): events and ad-hoc notifications in,
// delivery status, recipients, the in-app inbox and the poison queue out, plus health
// and Prometheus metrics.
package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/heraldhq/herald/adapters/sqlstore"
	"github.com/heraldhq/herald/notify"
	"github.com/heraldhq/herald/outbox"
)

// Config of the API server.
type Config struct {
	DB      *sqlstore.DB
	Outbox  *outbox.Writer
	Metrics *metrics.Set
	// APIKeys accepted as "Authorization: Bearer <key>". Empty disables authentication
	// (only allowed by the config when listening on a loopback address).
	APIKeys []string
	// BodyLimit is the largest request body in bytes. Default 1 MiB.
	BodyLimit int
	// Ready reports whether the pipeline is running (for /readyz). Default: always.
	Ready func() bool
	// Reporters take delivery reports at POST /v1/receipts/{provider}, by provider
	// name. They authenticate the provider's request themselves (signatures), so the
	// route takes no API key.
	Reporters map[string]Reporter
}

// Reporter verifies and decodes a provider's delivery reports.
type Reporter interface {
	ParseReports(header http.Header, body []byte) ([]notify.Report, error)
}

// Server is the HTTP API.
type Server struct {
	cfg  Config
	app  *fiber.App
	log  *slog.Logger
	keys [][]byte
	// closing ends the inbox streams when the server shuts down.
	closing   chan struct{}
	closeOnce sync.Once
}

// New builds the API.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if cfg.DB == nil || cfg.Outbox == nil || cfg.Metrics == nil {
		return nil, errors.New("server: db, outbox and metrics are required")
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = 1 << 20
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	s := &Server{cfg: cfg, log: logger, closing: make(chan struct{})}
	for _, k := range cfg.APIKeys {
		s.keys = append(s.keys, []byte(k))
	}
	s.app = fiber.New(fiber.Config{
		AppName:               "herald",
		BodyLimit:             cfg.BodyLimit,
		DisableStartupMessage: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
		ErrorHandler:          errorHandler(logger.Error),
	})
	s.routes()
	return s, nil
}

// App returns the Fiber app (for tests: app.Test).
func (s *Server) App() *fiber.App { return s.app }

// Listen serves on addr until Shutdown.
func (s *Server) Listen(addr string) error { return s.app.Listen(addr) }

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown stops the server, letting requests in flight finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closing) })
	return s.app.ShutdownWithContext(ctx)
}

func (s *Server) routes() {
	s.app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	s.app.Get("/readyz", s.readyz)
	s.app.Get("/metrics", func(c *fiber.Ctx) error {
		var b bytes.Buffer
		s.cfg.Metrics.WritePrometheus(&b)
		metrics.WriteProcessMetrics(&b)
		c.Set(fiber.HeaderContentType, "text/plain; version=0.0.4; charset=utf-8")
		return c.Send(b.Bytes())
	})
	v1 := s.app.Group("/v1", s.auth)
	v1.Post("/events", s.postEvent)
	v1.Post("/notifications", s.postNotification)
	v1.Get("/notifications/:id", s.getNotification)
	v1.Get("/deliveries", s.listDeliveries)
	v1.Put("/recipients/:id", s.putRecipient)
	v1.Get("/recipients/:id", s.getRecipient)
	v1.Get("/recipients/:id/inbox", s.getInbox)
	v1.Get("/recipients/:id/inbox/stream", s.streamInbox)
	v1.Post("/recipients/:id/inbox/:msg/read", s.readInbox)
	v1.Get("/poison", s.listPoison)
	v1.Post("/poison/:id/replay", s.replayPoison)
	v1.Delete("/poison/:id", s.deletePoison)
	v1.Post("/receipts/:provider", s.postReceipts)
}

func (s *Server) auth(c *fiber.Ctx) error {
	if len(s.keys) == 0 || strings.HasPrefix(c.Path(), "/v1/receipts/") {
		return c.Next()
	}
	h := c.Get(fiber.HeaderAuthorization)
	token, ok := strings.CutPrefix(h, "Bearer ")
	if ok {
		for _, k := range s.keys {
			if subtle.ConstantTimeCompare([]byte(token), k) == 1 {
				c.Locals("api_key", hashKey(token))
				return c.Next()
			}
		}
	}
	c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="herald"`)
	return problem(fiber.StatusUnauthorized, "send a valid API key as Authorization: Bearer <key>")
}

func hashKey(k string) string {
	h := sha256.Sum256([]byte(k))
	return hex.EncodeToString(h[:8])
}

func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := s.cfg.DB.R.PingContext(ctx); err != nil {
		return problem(fiber.StatusServiceUnavailable, "database unreachable")
	}
	if !s.cfg.Ready() {
		return problem(fiber.StatusServiceUnavailable, "pipeline not running")
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

// decode parses a JSON body strictly enough to give field-level errors.
func decode(c *fiber.Ctx, out any) error {
	if !strings.HasPrefix(c.Get(fiber.HeaderContentType), fiber.MIMEApplicationJSON) {
		return problem(fiber.StatusUnsupportedMediaType, "send a JSON body with Content-Type: application/json")
	}
	if err := json.Unmarshal(c.Body(), out); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return problem(fiber.StatusBadRequest, "malformed JSON", notify.FieldError{Field: te.Field, Reason: "must be a " + te.Type.String()})
		}
		return problem(fiber.StatusBadRequest, "malformed JSON: "+err.Error())
	}
	return nil
}

func (s *Server) writeOutbox(ctx context.Context, e notify.Event, idemKey string) (string, bool, error) {
	id := e.ID
	created := true
	err := s.cfg.DB.InTx(ctx, func(tx *sql.Tx) error {
		if idemKey != "" {
			existing, fresh, err := s.cfg.DB.Notifications().ClaimIdempotencyKey(ctx, tx, idemKey, e.ID)
			if err != nil {
				return err
			}
			if !fresh {
				id, created = existing, false
				return nil
			}
		}
		return s.cfg.Outbox.Write(ctx, tx, e)
	})
	return id, created, err
}

func (s *Server) postEvent(c *fiber.Ctx) error {
	var e notify.Event
	if err := decode(c, &e); err != nil {
		return err
	}
	if err := e.Validate(); err != nil {
		return invalid(err)
	}
	id, _, err := s.writeOutbox(c.UserContext(), e, "")
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"id": id})
}

// notificationRequest is the body of POST /v1/notifications.
type notificationRequest struct {
	Recipient struct {
		CustomerID   string       `json:"customer_id"`
		Phone        notify.Phone `json:"phone"`
		Email        notify.Email `json:"email"`
		WeChatOpenID string       `json:"wechat_openid"`
		PushToken    string       `json:"push_token"`
		WebhookURL   string       `json:"webhook_url"`
	} `json:"recipient"`
	Channels []notify.Channel `json:"channels"`
	Template string           `json:"template"`
	Data     map[string]any   `json:"data"`
	Content  *notify.Content  `json:"content"`
	Locale   string           `json:"locale"`
}

func (s *Server) postNotification(c *fiber.Ctx) error {
	var req notificationRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	key := c.Get("Idempotency-Key")
	if len(key) > 255 {
		return problem(fiber.StatusBadRequest, "invalid header", notify.FieldError{Field: "Idempotency-Key", Reason: "must be at most 255 characters"})
	}
	e := notify.Event{
		ID: "ntf_" + uuid.NewString(), Type: notify.TypeNotification, OccurredAt: time.Now().UTC(),
		CustomerID: req.Recipient.CustomerID, Channels: req.Channels, Template: req.Template,
		Data: req.Data, Content: req.Content, Locale: req.Locale,
	}
	r := req.Recipient
	inline := notify.Contacts{Phone: r.Phone, Email: r.Email, WeChatOpenID: r.WeChatOpenID, WebhookURL: r.WebhookURL}
	if r.PushToken != "" {
		inline.PushTokens = []string{r.PushToken}
	}
	if !inline.Empty() {
		e.Contact = &inline
	}
	if err := e.Validate(); err != nil {
		return invalid(err)
	}
	if key != "" {
		key = fmt.Sprint(c.Locals("api_key")) + ":" + key
	}
	id, created, err := s.writeOutbox(c.UserContext(), e, key)
	if err != nil {
		return err
	}
	status := fiber.StatusAccepted
	if !created {
		status = fiber.StatusOK
	}
	return c.Status(status).JSON(fiber.Map{"id": id})
}

func (s *Server) getNotification(c *fiber.Ctx) error {
	id := c.Params("id")
	ctx := c.UserContext()
	n, err := s.cfg.DB.Notifications().Get(ctx, id)
	if errors.Is(err, sqlstore.ErrNotFound) {
		return problem(fiber.StatusNotFound, "no event or notification with id "+strconv.Quote(id))
	}
	if err != nil {
		return err
	}
	ds, err := s.cfg.DB.Deliveries().ByEvent(ctx, id)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{
		"id": n.ID, "type": n.Type, "customer_id": n.CustomerID, "status": n.Status, "reason": n.Reason,
		"occurred_at": n.OccurredAt, "deliveries": ds,
	})
}

func limitParam(c *fiber.Ctx) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		return 0, badField("limit", "must be an integer from 1 to 500")
	}
	return n, nil
}

func (s *Server) listDeliveries(c *fiber.Ctx) error {
	f := sqlstore.DeliveryFilter{Status: notify.Status(c.Query("status")), Channel: notify.Channel(c.Query("channel")), Cursor: c.Query("cursor")}
	if f.Status != "" && !f.Status.Valid() {
		return badField("status", "unknown status")
	}
	if f.Channel != "" && !f.Channel.Valid() {
		return badField("channel", "unknown channel")
	}
	var err error
	if f.Limit, err = limitParam(c); err != nil {
		return err
	}
	ds, next, err := s.cfg.DB.Deliveries().List(c.UserContext(), f)
	if errors.Is(err, sqlstore.ErrBadCursor) {
		return badField("cursor", "not a cursor from a previous page")
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"deliveries": ds, "next_cursor": next})
}

func (s *Server) putRecipient(c *fiber.Ctx) error {
	var r notify.Recipient
	if err := decode(c, &r); err != nil {
		return err
	}
	r.ID = c.Params("id")
	if err := r.Validate(); err != nil {
		return invalid(err)
	}
	saved, err := s.cfg.DB.Recipients().Put(c.UserContext(), r)
	if err != nil {
		return err
	}
	return c.JSON(saved)
}

func (s *Server) getRecipient(c *fiber.Ctx) error {
	r, err := s.cfg.DB.Recipients().Get(c.UserContext(), c.Params("id"))
	if errors.Is(err, sqlstore.ErrNotFound) {
		return problem(fiber.StatusNotFound, "no recipient "+strconv.Quote(c.Params("id")))
	}
	if err != nil {
		return err
	}
	return c.JSON(r)
}

func (s *Server) getInbox(c *fiber.Ctx) error {
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	page, err := s.cfg.DB.Inbox().List(c.UserContext(), c.Params("id"), c.Query("cursor"), limit)
	if errors.Is(err, sqlstore.ErrBadCursor) {
		return badField("cursor", "not a cursor from a previous page")
	}
	if err != nil {
		return err
	}
	return c.JSON(page)
}

func (s *Server) readInbox(c *fiber.Ctx) error {
	id, err := strconv.ParseInt(c.Params("msg"), 10, 64)
	if err != nil || id <= 0 {
		return problem(fiber.StatusBadRequest, "invalid message id", notify.FieldError{Field: "msg", Reason: "must be a positive integer"})
	}
	at, err := s.cfg.DB.Inbox().MarkRead(c.UserContext(), c.Params("id"), id)
	if errors.Is(err, sqlstore.ErrNotFound) {
		return problem(fiber.StatusNotFound, fmt.Sprintf("recipient %q has no inbox message %d", c.Params("id"), id))
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"id": id, "read_at": at})
}

// streamInbox sends the recipient's new inbox messages as Server-Sent Events
// ("event: message", id = message id, data = the message JSON) as they arrive, from
// any instance: it polls the inbox table every 250 ms. A client reconnecting with
// Last-Event-ID gets what it missed. A comment line every 15 s keeps proxies open.
func (s *Server) streamInbox(c *fiber.Ctx) error {
	recipient := c.Params("id")
	inbox := s.cfg.DB.Inbox()
	var last int64
	if v := c.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return problem(fiber.StatusBadRequest, "invalid Last-Event-ID", notify.FieldError{Field: "Last-Event-ID", Reason: "must be a message id"})
		}
		last = n
	} else {
		n, err := inbox.Newest(c.UserContext(), recipient)
		if err != nil {
			return err
		}
		last = n
	}
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	streams := s.cfg.Metrics.GetOrCreateGauge(`herald_inbox_streams`, nil)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		streams.Inc()
		defer streams.Dec()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		poll := time.NewTicker(250 * time.Millisecond)
		defer poll.Stop()
		beat := time.Now()
		if _, err := w.WriteString(": connected\n\n"); err != nil || w.Flush() != nil {
			return
		}
		for {
			select {
			case <-s.closing:
				return
			case <-poll.C:
			}
			msgs, err := inbox.After(ctx, recipient, last, 100)
			if err != nil {
				s.log.Warn("inbox stream", "error", err)
				continue
			}
			for _, m := range msgs {
				b, _ := json.Marshal(m)
				_, _ = fmt.Fprintf(w, "event: message\nid: %d\ndata: %s\n\n", m.ID, b)
				last = m.ID
			}
			if len(msgs) == 0 && time.Since(beat) < 15*time.Second {
				continue
			}
			if len(msgs) == 0 {
				_, _ = w.WriteString(": keep-alive\n\n")
			}
			beat = time.Now()
			if err := w.Flush(); err != nil {
				return // the client went away
			}
		}
	})
	return nil
}

func (s *Server) listPoison(c *fiber.Ctx) error {
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	es, next, err := s.cfg.DB.Poison().List(c.UserContext(), c.Query("topic"), c.Query("cursor"), limit)
	if errors.Is(err, sqlstore.ErrBadCursor) {
		return badField("cursor", "not a cursor from a previous page")
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"poison": es, "next_cursor": next})
}

func poisonID(c *fiber.Ctx) (int64, error) {
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, problem(fiber.StatusBadRequest, "invalid path parameter", notify.FieldError{Field: "id", Reason: "must be a poison entry id"})
	}
	return id, nil
}

func (s *Server) replayPoison(c *fiber.Ctx) error {
	id, err := poisonID(c)
	if err != nil {
		return err
	}
	e, err := s.cfg.DB.Poison().Replay(c.UserContext(), id)
	if errors.Is(err, sqlstore.ErrNotFound) {
		return problem(fiber.StatusNotFound, fmt.Sprintf("no poisoned message %d", id))
	}
	if err != nil {
		return err
	}
	s.log.Info("poisoned message replayed", "id", id, "topic", e.Topic, "uuid", e.MessageUUID)
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"replayed": id, "topic": e.Topic, "message_uuid": e.MessageUUID})
}

// postReceipts applies a provider's delivery reports. Unknown deliveries are counted
// and ignored (a report may arrive for a message sent before a restore).
func (s *Server) postReceipts(c *fiber.Ctx) error {
	name := c.Params("provider")
	rep, ok := s.cfg.Reporters[name]
	if !ok {
		return problem(fiber.StatusNotFound, fmt.Sprintf("no provider %q takes delivery reports", name))
	}
	header := http.Header{}
	for k, v := range c.GetReqHeaders() {
		header[k] = v
	}
	reports, err := rep.ParseReports(header, c.Body())
	if err != nil {
		s.log.Warn("delivery report refused", "provider", name, "error", err)
		return problem(fiber.StatusUnauthorized, err.Error())
	}
	matched := 0
	for _, r := range reports {
		found, err := s.cfg.DB.Deliveries().RecordReport(c.UserContext(), name, r)
		if err != nil {
			return err
		}
		if found {
			matched++
		}
	}
	ReportsCounter(s.cfg.Metrics, true).Add(matched)
	ReportsCounter(s.cfg.Metrics, false).Add(len(reports) - matched)
	return c.JSON(fiber.Map{"received": len(reports), "matched": matched})
}

// ReportsCounter is herald_delivery_reports_total: the delivery reports received, by
// whether they found their delivery (this endpoint's, and SMPP connections': service).
func ReportsCounter(set *metrics.Set, matched bool) *metrics.Counter {
	return set.GetOrCreateCounter(fmt.Sprintf(`herald_delivery_reports_total{matched="%t"}`, matched))
}

func (s *Server) deletePoison(c *fiber.Ctx) error {
	id, err := poisonID(c)
	if err != nil {
		return err
	}
	err = s.cfg.DB.Poison().Delete(c.UserContext(), id)
	if errors.Is(err, sqlstore.ErrNotFound) {
		return problem(fiber.StatusNotFound, fmt.Sprintf("no poisoned message %d", id))
	}
	if err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
