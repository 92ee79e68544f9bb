// slots.go: the slots of concurrency keys (engine.Slots) over a store's Records.

package store

import (
	"cmp"
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
// processes on one store (server replicas on PostgreSQL) share the keys. The zero value with
// Records set is ready to use.
type Slots struct {
	Records Records

	mu sync.Mutex
	// keys serializes this process's changes of a key, so that its workers do not race one
	// another's compare-and-swaps (other processes still may).
	keys map[string]*sync.Mutex
}

// lock takes this process's lock of a record and returns its unlock.
func (s *Slots) lock(id string) func() {
	s.mu.Lock()
	if s.keys == nil {
		s.keys = map[string]*sync.Mutex{}
	}
	m := s.keys[id]
	if m == nil {
		m = &sync.Mutex{}
		s.keys[id] = m
	}
	s.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// slotLine is the data of a key's record.
type slotLine struct {
	Namespace string   `json:"namespace"`
	Key       string   `json:"key"`
	Holders   []string `json:"holders,omitempty"`
	// Limit is the limit the last run to ask had, by which a slot given up is handed on.
	Limit int      `json:"limit"`
	Queue []waiter `json:"queue,omitempty"`
	// Seq numbers the runs as they join the line, first come first served within a priority.
	Seq int64 `json:"seq"`
}

type waiter struct {
	Run      string `json:"run"`
	Priority int32  `json:"priority,omitempty"`
	Seq      int64  `json:"seq"`
}

// sort orders the line: higher priority first, then first come.
func (l *slotLine) sort() {
	slices.SortFunc(l.Queue, func(a, b waiter) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.Seq, b.Seq))
	})
}

// change reads the key's record, lets f change it, and writes it back if f says so, again
// from what is stored when another writer came first.
func (s *Slots) change(ctx context.Context, namespace, key string, f func(l *slotLine) bool) error {
	id := namespace + "/" + key
	defer s.lock(id)()
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
		if !f(l) {
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
		if slices.Contains(l.Holders, req.Run) {
			place = 0
			return false
		}
		changed := l.Limit != req.Limit
		l.Limit = req.Limit
		i := slices.IndexFunc(l.Queue, func(w waiter) bool { return w.Run == req.Run })
		if i < 0 {
			l.Seq++
			l.Queue = append(l.Queue, waiter{Run: req.Run, Priority: req.Priority, Seq: l.Seq})
			l.sort()
			i = slices.IndexFunc(l.Queue, func(w waiter) bool { return w.Run == req.Run })
			changed = true
		}
		free := req.Limit - len(l.Holders)
		if i < free {
			l.Queue = slices.Delete(l.Queue, i, i+1)
			l.Holders = append(l.Holders, req.Run)
			place = 0
			return true
		}
		place = i - max(free, 0) + 1
		if !req.Queue {
			return false // left out: what was added above is not written
		}
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
