package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
)

// Retry is the backoff between the tries of one event: Initial, doubled up to Max, Tries in
// all; the event is then dropped (counted and logged).
type Retry struct {
	Initial, Max time.Duration
	Tries        int
}

// DefaultRetry tries an event 6 times over about 15 seconds.
var DefaultRetry = Retry{Initial: 500 * time.Millisecond, Max: 8 * time.Second, Tries: 6}

// sender delivers one event to a sink, once.
type sender interface {
	send(ctx context.Context, ev cloudevents.Event) error
	close()
}

// sink is one destination with its queue and the goroutine draining it.
type sink struct {
	name    string
	sender  sender
	queue   chan cloudevents.Event
	retry   Retry
	timeout time.Duration
	e       *Emitter

	stop func()
	done chan struct{}
}

// CheckSink reports whether raw is a sink New takes, with an error naming it when it is not.
func CheckSink(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("events sink %q: want http(s)://host/path or nats://host:port/subject", raw)
	}
	switch u.Scheme {
	case "http", "https":
		_, err = newHTTPSender(u)
	case "nats":
		_, err = newNATSSender(u, time.Second)
	default:
		err = errors.New("want http(s)://host/path or nats://host:port/subject")
	}
	if err != nil {
		return fmt.Errorf("events sink %q: %w", redactURL(u), err)
	}
	return nil
}

func newSink(raw string, opts Options, e *Emitter) (*sink, error) {
	if err := CheckSink(raw); err != nil {
		return nil, err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	s := &sink{name: redactURL(u), retry: opts.Retry, timeout: opts.Timeout, e: e, done: make(chan struct{})}
	if s.retry.Tries <= 0 {
		s.retry = DefaultRetry
	}
	if s.timeout <= 0 {
		s.timeout = 10 * time.Second
	}
	size := opts.QueueSize
	if size <= 0 {
		size = DefaultQueueSize
	}
	s.queue = make(chan cloudevents.Event, size)
	switch u.Scheme {
	case "http", "https":
		s.sender, err = newHTTPSender(u)
	case "nats":
		s.sender, err = newNATSSender(u, s.timeout)
	default:
		err = errors.New("want http(s)://host/path or nats://host:port/subject")
	}
	if err != nil {
		return nil, fmt.Errorf("events sink %q: %w", s.name, err)
	}
	quit := make(chan struct{})
	var once sync.Once
	s.stop = func() { once.Do(func() { close(quit) }) }
	// The sink lives until Close, whatever the context of whoever built it.
	go s.drain(quit)
	return s, nil
}

// redactURL is u without its password, for logs and metrics.
func redactURL(u *url.URL) string {
	c := *u
	c.Fragment = ""
	return c.Redacted()
}

// enqueue queues ev without waiting: a full queue drops it.
func (s *sink) enqueue(ev cloudevents.Event) {
	select {
	case s.queue <- ev:
	default:
		s.e.dropped.WithLabelValues(s.name, "queue_full").Inc()
		s.e.log.Warn("event dropped: the sink's queue is full", "sink", s.name, "type", ev.Type(), "subject", ev.Subject())
	}
}

// drain delivers the queued events in order until the queue is closed and empty, or quit.
func (s *sink) drain(quit <-chan struct{}) {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-s.queue:
			if !ok {
				return
			}
			s.deliver(ctx, ev)
		}
	}
}

// deliver tries ev with backoff until it is accepted, the tries run out, or ctx is done.
func (s *sink) deliver(ctx context.Context, ev cloudevents.Event) {
	wait := s.retry.Initial
	var err error
	for try := 1; try <= s.retry.Tries; try++ {
		tctx, cancel := context.WithTimeout(ctx, s.timeout)
		err = s.sender.send(tctx, ev)
		cancel()
		if err == nil {
			s.e.sent.WithLabelValues(s.name).Inc()
			return
		}
		if try == s.retry.Tries {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
			try = s.retry.Tries
		case <-time.After(wait):
		}
		wait = min(2*wait, s.retry.Max)
	}
	s.e.dropped.WithLabelValues(s.name, "undeliverable").Inc()
	s.e.log.Warn("event dropped: the sink did not take it", "sink", s.name, "type", ev.Type(),
		"subject", ev.Subject(), "error", err)
}

// Close delivers what is queued, for at most until ctx is done, then stops the sinks.
// Events the engine reports after Close are not emitted.
func (e *Emitter) Close(ctx context.Context) {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		for _, s := range e.sinks {
			close(s.queue)
		}
	}
	e.mu.Unlock()
	for _, s := range e.sinks {
		select {
		case <-s.done:
		case <-ctx.Done():
			s.stop()
			<-s.done
		}
		s.stop()
		s.sender.close()
	}
}

// httpSender POSTs events with the CloudEvents SDK's HTTP binding.
type httpSender struct {
	client     cloudevents.Client
	structured bool
}

func newHTTPSender(u *url.URL) (*httpSender, error) {
	structured := false
	switch u.Fragment {
	case "", "binary":
	case "structured":
		structured = true
	default:
		return nil, fmt.Errorf("unknown mode #%s: want #binary or #structured", u.Fragment)
	}
	target := *u
	target.Fragment = ""
	p, err := cehttp.New(cehttp.WithTarget(target.String()), cehttp.WithClient(http.Client{}))
	if err != nil {
		return nil, err
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		return nil, err
	}
	return &httpSender{client: c, structured: structured}, nil
}

func (h *httpSender) send(ctx context.Context, ev cloudevents.Event) error {
	if h.structured {
		ctx = cloudevents.WithEncodingStructured(ctx)
	} else {
		ctx = cloudevents.WithEncodingBinary(ctx)
	}
	res := h.client.Send(ctx, ev)
	if cloudevents.IsACK(res) {
		return nil
	}
	return res
}

func (h *httpSender) close() {}

// natsSender publishes events in structured mode (JSON) to a subject, and flushes so that the
// server has them.
type natsSender struct {
	server, subject string
	timeout         time.Duration

	mu   sync.Mutex
	conn *nats.Conn
}

func newNATSSender(u *url.URL, timeout time.Duration) (*natsSender, error) {
	subject := strings.Trim(u.Path, "/")
	if subject == "" || strings.ContainsAny(subject, " /\t") {
		return nil, errors.New("want nats://host:port/subject, with one subject such as stepflow.runs")
	}
	server := *u
	server.Path, server.Fragment, server.RawQuery = "", "", ""
	return &natsSender{server: server.String(), subject: subject, timeout: timeout}, nil
}

func (n *natsSender) send(ctx context.Context, ev cloudevents.Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil || n.conn.IsClosed() {
		// Connected lazily, and again after a failure, so that a NATS server that starts after
		// stepflow is reached; while connected, nats.go reconnects by itself.
		conn, err := nats.Connect(n.server, nats.Timeout(n.timeout), nats.Name("stepflow events"))
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		n.conn = conn
	}
	msg := nats.NewMsg(n.subject)
	msg.Header.Set("Content-Type", cloudevents.ApplicationCloudEventsJSON)
	msg.Data = body
	if err := n.conn.PublishMsg(msg); err != nil {
		return err
	}
	return n.conn.FlushWithContext(ctx)
}

func (n *natsSender) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn != nil {
		n.conn.Close()
	}
}
