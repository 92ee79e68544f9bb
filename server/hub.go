package server

import (
	"context"
	"sync"

	"github.com/stepflow/stepflow/engine"
)

// hub passes what happens to runs to the requests following them: the event streams of
// /events and the requests waiting (?wait) for a run to settle. It costs nothing for a run
// nobody follows.
type hub struct {
	mu      sync.Mutex
	subs    map[engine.Key]map[*subscriber]struct{}
	waiters map[engine.Key][]chan []byte
	// retention says when the runs it shows expire.
	retention engine.Retention
}

// event is one server-sent event: its name and its JSON data.
type event struct {
	name string
	data []byte
	// version is the run's version the event comes with, so that a stream that began with a
	// later snapshot skips it.
	version int64
}

// subscriber is one event stream. A stream that falls behind is closed (gone is closed);
// the browser's EventSource reconnects and starts again from a fresh snapshot.
type subscriber struct {
	events chan event
	gone   chan struct{}
	once   sync.Once
}

func (s *subscriber) drop() { s.once.Do(func() { close(s.gone) }) }

func newHub(retention engine.Retention) *hub {
	return &hub{subs: map[engine.Key]map[*subscriber]struct{}{}, waiters: map[engine.Key][]chan []byte{}, retention: retention}
}

func (h *hub) subscribe(key engine.Key) *subscriber {
	s := &subscriber{events: make(chan event, 256), gone: make(chan struct{})}
	h.mu.Lock()
	if h.subs[key] == nil {
		h.subs[key] = map[*subscriber]struct{}{}
	}
	h.subs[key][s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *hub) unsubscribe(key engine.Key, s *subscriber) {
	h.mu.Lock()
	delete(h.subs[key], s)
	if len(h.subs[key]) == 0 {
		delete(h.subs, key)
	}
	h.mu.Unlock()
	s.drop()
}

func (h *hub) following(key engine.Key) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[key]) > 0 || len(h.waiters[key]) > 0
}

// publish sends events to the streams of key, dropping a stream that cannot keep up.
func (h *hub) publish(key engine.Key, evs ...event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[key] {
		for _, ev := range evs {
			select {
			case s.events <- ev:
			default:
				s.drop()
			}
		}
	}
}

// wait registers for the view of key's run when it next settles; cancel unregisters.
func (h *hub) wait(key engine.Key) (<-chan []byte, func()) {
	ch := make(chan []byte, 1)
	h.mu.Lock()
	h.waiters[key] = append(h.waiters[key], ch)
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		list := h.waiters[key]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(h.waiters, key)
		} else {
			h.waiters[key] = list
		}
	}
}

// RunChanged implements engine.Observer: it sends the run to its streams, and to the requests
// waiting for it once it has settled.
func (h *hub) RunChanged(run *engine.Run) {
	key := run.Key()
	// The run is encoded only for someone who reads it now: an event stream, or a request
	// waiting for it to settle. A run with large outputs is tens of megabytes of JSON, which a
	// request waiting alone need not have encoded at every transition.
	h.mu.Lock()
	streams := len(h.subs[key]) > 0
	h.mu.Unlock()
	settled := engine.Settled(run)
	if !streams && !(settled && h.following(key)) {
		return
	}
	data, err := ofRun(run, newRunView(run, h.retention))
	if err != nil {
		return
	}
	h.publish(key, event{name: "run", data: data, version: run.Version})
	if !settled {
		return
	}
	h.mu.Lock()
	waiters := h.waiters[key]
	delete(h.waiters, key)
	h.mu.Unlock()
	for _, ch := range waiters {
		ch <- data
	}
}

// remote passes on a run another server saved: word to the event streams to read the log
// entries that came with it from the store, then the run as RunChanged does (the order of a
// local save's events).
func (h *hub) remote(run *engine.Run) {
	h.publish(run.Key(), event{name: syncLogs, version: run.Version})
	h.RunChanged(run)
}

// syncLogs is the event that has a stream read the run's log from the store and send the
// entries it has not sent: another server appended them. It is not sent to the client.
const syncLogs = "sync-logs"

// deleted tells the streams of key that the run is gone.
func (h *hub) deleted(key engine.Key) {
	h.publish(key, event{name: "deleted", data: []byte("{}")})
}

// publishing is the store the engine writes through: after each save it passes the new log
// entries to the run's streams.
type publishing struct {
	engine.Store
	hub *hub
}

// Save implements engine.Store.
func (p *publishing) Save(ctx context.Context, run *engine.Run, logs []engine.LogEntry) error {
	if err := p.Store.Save(ctx, run, logs); err != nil {
		return err
	}
	if len(logs) > 0 && p.hub.following(run.Key()) {
		evs := make([]event, 0, len(logs))
		for _, l := range logs {
			if data, err := ofRun(run, l); err == nil {
				evs = append(evs, event{name: "log", data: data, version: run.Version})
			}
		}
		p.hub.publish(run.Key(), evs...)
	}
	return nil
}
