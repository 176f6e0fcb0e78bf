package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/pollgrid/pollgrid/pkg/bus"
)

// Error codes of a failed request, HTTP-like.
const (
	CodeBadRequest  = 400
	CodeNotFound    = 404
	CodeConflict    = 409
	CodeInternal    = 500
	CodeUnavailable = 503
)

// Error is a request the service refused or could not carry out. Its
// message names the thing and the fix.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"error"`
	// Problems are every problem of a definition refused (apply, rollback).
	Problems []Problem `json:"problems,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with code.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Handler answers one request: data is the request's JSON, the result is
// encoded as the reply. An *Error keeps its code; any other error is a 500.
type Handler func(ctx context.Context, data []byte) (any, error)

// ServerConfig describes one process's instance of the admin service.
type ServerConfig struct {
	// Service is scheduler, worker or aggregator; Instance this replica's id.
	Service  string
	Instance string
	// Version is the build's version, shown in the instance's metadata.
	Version string
	// Redact masks secrets in every reply: the handlers keep secrets out
	// already, this is the last guard.
	Redact func(string) string
	// Timeout bounds one request's handling; default 60s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Server is one process's instance of the pollgrid-admin micro service.
type Server struct {
	cfg    ServerConfig
	svc    micro.Service
	group  micro.Group
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	nc     *nats.Conn
}

// NewServer registers this process's instance of pollgrid-admin on nc.
// Add its endpoints with Handle and HandleEach; Stop ends it.
func NewServer(nc *nats.Conn, cfg ServerConfig) (*Server, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Redact == nil {
		cfg.Redact = func(s string) string { return s }
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     APIVersion,
		Description: "pollgrid runtime controls and connector catalog: list, status, trigger, pause, resume, reset, reload; apply, definitions, get, history, rollback, delete",
		Metadata:    map[string]string{"service": cfg.Service, "instance": cfg.Instance, "build": cfg.Version},
	})
	if err != nil {
		return nil, fmt.Errorf("start the %s micro service: %w", ServiceName, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, svc: svc, group: svc.AddGroup(bus.AdminPrefix), ctx: ctx, cancel: cancel, nc: nc}, nil
}

// Handle serves verb on pollgrid.admin.<verb>, one replica of the service
// answering each request (a queue group).
func (s *Server) Handle(verb string, h Handler) error {
	return s.add(verb, h, micro.WithEndpointQueueGroup(ServiceName))
}

// HandleEach serves verb on every replica: each one answers (reload).
func (s *Server) HandleEach(verb string, h Handler) error {
	return s.add(verb, h, micro.WithEndpointQueueGroupDisabled())
}

func (s *Server) add(verb string, h Handler, opt micro.EndpointOpt) error {
	err := s.group.AddEndpoint(verb, micro.HandlerFunc(func(req micro.Request) { s.serve(verb, h, req) }),
		opt, micro.WithEndpointMetadata(map[string]string{"service": s.cfg.Service}))
	if err != nil {
		return fmt.Errorf("serve %s: %w", Subject(verb), err)
	}
	// Served once this returns: the server has the subscription (a request
	// sent right after, by a test or a Job, finds a responder).
	if err := s.nc.Flush(); err != nil {
		return fmt.Errorf("serve %s: %w", Subject(verb), err)
	}
	return nil
}

// serve answers on its own goroutine: a trigger waits for a whole poll,
// and must not hold the endpoint's other requests back. It publishes the
// answer itself rather than through req, which micro reads back after the
// handler returns (for its stats) and so may not be answered from another
// goroutine.
func (s *Server) serve(verb string, h Handler, req micro.Request) {
	reply, data := req.Reply(), req.Data()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
		defer cancel()
		answer, err := call(ctx, h, data)
		if err == nil {
			var body []byte
			body, err = encode(answer, s.cfg.Redact)
			if max := s.nc.MaxPayload(); err == nil && max > 0 && int64(len(body)) > max {
				err = Errorf(CodeInternal, "the reply is %d bytes, over the NATS server's max_payload of %d: ask for less (list: a smaller limit)",
					len(body), max)
			}
			if err == nil {
				if perr := s.nc.Publish(reply, body); perr != nil {
					s.cfg.Logger.Warn("admin reply failed", "verb", verb, "error", perr)
				}
				return
			}
		}
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Code: CodeInternal, Message: err.Error()}
			s.cfg.Logger.Error("admin request failed", "verb", verb, "error", err)
		}
		redacted := &Error{Code: e.Code, Message: s.cfg.Redact(e.Message)}
		for _, p := range e.Problems {
			redacted.Problems = append(redacted.Problems, Problem{Path: p.Path, Message: s.cfg.Redact(p.Message)})
		}
		e = redacted
		body, _ := json.Marshal(e)
		msg := &nats.Msg{Subject: reply, Data: body, Header: nats.Header{
			micro.ErrorHeader: []string{e.Message}, micro.ErrorCodeHeader: []string{strconv.Itoa(e.Code)},
		}}
		if perr := s.nc.PublishMsg(msg); perr != nil {
			s.cfg.Logger.Warn("admin reply failed", "verb", verb, "error", perr)
		}
	}()
}

// call runs h, turning a panic into an error with its stack logged by the
// caller: a bad request must not take the service down.
func call(ctx context.Context, h Handler, data []byte) (reply any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return h(ctx, data)
}

// encode writes reply as JSON with every string value passed through
// redact (keys are ours and hold no secret).
func encode(reply any, redact func(string) string) ([]byte, error) {
	tree, err := Redacted(reply, redact)
	if err != nil {
		return nil, err
	}
	return json.Marshal(tree)
}

// Redacted returns v as a JSON tree (what encoding/json would write) with
// every string value passed through redact.
func Redacted(v any, redact func(string) string) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode reply: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("encode reply: %w", err)
	}
	return redactTree(tree, redact), nil
}

func redactTree(v any, redact func(string) string) any {
	switch t := v.(type) {
	case string:
		return redact(t)
	case map[string]any:
		for k, e := range t {
			t[k] = redactTree(e, redact)
		}
	case []any:
		for i, e := range t {
			t[i] = redactTree(e, redact)
		}
	}
	return v
}

// Decode reads a request's JSON into req; an empty request is the zero
// value. Unknown fields are refused, so a typo does not go unnoticed.
func Decode(data []byte, req any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		return Errorf(CodeBadRequest, "the request is not the JSON this verb takes: %v", err)
	}
	return nil
}

// ID is this instance's micro id, unique per process and service.
func (s *Server) ID() string { return s.svc.Info().ID }

// Stop removes this instance's endpoints and waits for the requests being
// answered.
func (s *Server) Stop() error {
	err := s.svc.Stop()
	s.cancel()
	s.wg.Wait()
	return err
}
