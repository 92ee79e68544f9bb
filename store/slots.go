// slots.go: the slots of concurrency keys (engine.Slots) over a store's Records.

package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/stepflow/stepflow/engine"
)

// RecordSlots is the kind of the records that hold the slots of concurrency keys, one per key
// keyed "<namespace>/<key>".
const RecordSlots = "concurrency"

// maxSlotTries bounds the compare-and-swaps of one call that lost to another writer.
const maxSlotTries = 1000

// Slots is engine.Slots over a store's Records: a key's record holds the runs holding its
// slots and the line of those waiting, changed only by compare-and-swap, so that several
// processes on one store (server replicas on PostgreSQL) share the keys. The changes this
// process asks of a key while one is being written are written together, in one read and one
// write of the record. The zero value with Records set is ready to use.
type Slots struct {
	Records Records

	mu   sync.Mutex
	keys map[string]*slotWriter
}

// slotWriter gathers this process's changes of one key's record, so that its workers do not
// race one another's compare-and-swaps (other processes still may), nor wait for one
// another's writes one by one.
type slotWriter struct {
	// turn is held (a value in it) by the caller writing the changes gathered.
	turn chan struct{}

	mu      sync.Mutex
	pending []*slotChange
}

// slotChange is one change of a key's record waiting to be written.
type slotChange struct {
	f    func(l *slotLine) bool
	done chan error
}

// writer returns this process's writer of a record.
func (s *Slots) writer(id string) *slotWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]*slotWriter{}
	}
	w := s.keys[id]
	if w == nil {
		w = &slotWriter{turn: make(chan struct{}, 1)}
		s.keys[id] = w
	}
	return w
}

// slotLine is the data of a key's record.
type slotLine struct {
	Namespace string   `json:"namespace"`
	Key       string   `json:"key"`
	Holders   []string `json:"holders,omitempty"`
	// Limit is the limit the last run to ask had, by which a slot given up is handed on.
	Limit int `json:"limit"`
	// Queue is the line, in order: higher priority first, then first come.
	Queue []waiter `json:"queue,omitempty"`
	// Seq numbers the runs as they join the line, first come first served within a priority.
	Seq int64 `json:"seq"`
}

type waiter struct {
	Run      string `json:"run"`
	Priority int32  `json:"priority,omitempty"`
	Seq      int64  `json:"seq"`
}

// change reads the key's record, lets f change it, and writes it back if f says so, again
// from what is stored when another writer came first. f leaves the line as it found it when
// it returns false. The changes asked while another is written wait for it, and are then
// applied in the order asked and written at once by one of their callers (with its ctx).
func (s *Slots) change(ctx context.Context, namespace, key string, f func(l *slotLine) bool) error {
	w := s.writer(namespace + "/" + key)
	c := &slotChange{f: f, done: make(chan error, 1)}
	w.mu.Lock()
	w.pending = append(w.pending, c)
	w.mu.Unlock()
	select {
	case err := <-c.done: // written by the caller whose turn it was
		return err
	case w.turn <- struct{}{}:
	}
	defer func() { <-w.turn }()
	select {
	case err := <-c.done:
		return err
	default:
	}
	w.mu.Lock()
	batch := w.pending
	w.pending = nil
	w.mu.Unlock()
	err := s.write(ctx, namespace, key, batch)
	for _, b := range batch {
		b.done <- err
	}
	return <-c.done
}

// write applies the changes to the key's record, in order, and writes it once if any changed
// it, again from what is stored when another writer came first.
func (s *Slots) write(ctx context.Context, namespace, key string, batch []*slotChange) error {
	id := namespace + "/" + key
	for range maxSlotTries {
		l := &slotLine{Namespace: namespace, Key: key}
		rec, err := s.Records.Record(ctx, RecordSlots, id)
		switch {
		case errors.Is(err, engine.ErrNotFound):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(rec.Data, l); err != nil {
				return fmt.Errorf("record %s %s: %w", RecordSlots, id, err)
			}
		}
		changed := false
		for _, c := range batch {
			changed = c.f(l) || changed
		}
		if !changed {
			return nil
		}
		data, err := json.Marshal(l)
		if err != nil {
			return err
		}
		_, err = s.Records.PutRecord(ctx, RecordSlots, id, data, rec.Version)
		if errors.Is(err, engine.ErrConflict) || errors.Is(err, ErrExists) || errors.Is(err, engine.ErrNotFound) {
			continue
		}
		return err
	}
	return fmt.Errorf("record %s %s: changed by others %d times in a row", RecordSlots, id, maxSlotTries)
}

// Acquire implements engine.Slots.
func (s *Slots) Acquire(ctx context.Context, req engine.SlotRequest) (int, error) {
	var place int
	err := s.change(ctx, req.Namespace, req.Key, func(l *slotLine) bool {
		place = 0
		if slices.Contains(l.Holders, req.Run) {
			return false
		}
		free := req.Limit - len(l.Holders)
		changed := l.Limit != req.Limit
		i := slices.IndexFunc(l.Queue, func(w waiter) bool { return w.Run == req.Run })
		if i < 0 {
			// It joins the line after every waiter of its priority or higher (l.Queue is
			// kept in order).
			i = slices.IndexFunc(l.Queue, func(w waiter) bool { return w.Priority < req.Priority })
			if i < 0 {
				i = len(l.Queue)
			}
			if i >= free && !req.Queue {
				place = i - max(free, 0) + 1
				return false // left out: the line is not changed
			}
			l.Seq++
			l.Queue = slices.Insert(l.Queue, i, waiter{Run: req.Run, Priority: req.Priority, Seq: l.Seq})
			changed = true
		}
		l.Limit = req.Limit
		if i < free {
			l.Queue = slices.Delete(l.Queue, i, i+1)
			l.Holders = append(l.Holders, req.Run)
			return true
		}
		place = i - max(free, 0) + 1
		return changed
	})
	return place, err
}

// Release implements engine.Slots. It hands the slots now free to the runs first in line, in
// the same write, and returns them: they hold their slot when they are woken.
func (s *Slots) Release(ctx context.Context, namespace, key, run string) ([]string, error) {
	var next []string
	err := s.change(ctx, namespace, key, func(l *slotLine) bool {
		next = nil
		h := slices.Index(l.Holders, run)
		q := slices.IndexFunc(l.Queue, func(w waiter) bool { return w.Run == run })
		if h < 0 && q < 0 {
			return false
		}
		if q >= 0 {
			l.Queue = slices.Delete(l.Queue, q, q+1)
		}
		if h >= 0 {
			l.Holders = slices.Delete(l.Holders, h, h+1)
			for len(l.Holders) < l.Limit && len(l.Queue) > 0 {
				l.Holders = append(l.Holders, l.Queue[0].Run)
				next = append(next, l.Queue[0].Run)
				l.Queue = l.Queue[1:]
			}
		}
		return true
	})
	return next, err
}

// Holders implements engine.Slots.
func (s *Slots) Holders(ctx context.Context) ([]engine.SlotHolder, error) {
	recs, err := s.Records.Records(ctx, RecordSlots, "")
	if err != nil {
		return nil, err
	}
	var out []engine.SlotHolder
	for _, rec := range recs {
		var l slotLine
		if err := json.Unmarshal(rec.Data, &l); err != nil {
			return nil, fmt.Errorf("record %s %s: %w", RecordSlots, rec.Key, err)
		}
		for _, r := range l.Holders {
			out = append(out, engine.SlotHolder{Namespace: l.Namespace, Key: l.Key, Run: r, Held: true})
		}
		for _, w := range l.Queue {
			out = append(out, engine.SlotHolder{Namespace: l.Namespace, Key: l.Key, Run: w.Run})
		}
	}
	return out, nil
}
