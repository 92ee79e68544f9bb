package engine

import (
	"sync"
	"time"
)

// QueueObserver is told how the engine's work queue moves: the keys of runs waiting for a worker.
// It is called with the queue's lock held, on the path of every transition, so it must be quick
// (an atomic update, no I/O) and must not call the Engine. Telemetry implements it to export the
// queue's depth and how long runs wait for a worker.
type QueueObserver interface {
	// Queued is called when a run's key joins the line for a worker; depth is how many keys
	// wait in it now. A key added again while it waits does not join it twice and is not
	// reported; one added while a worker holds it joins the line when the worker is done.
	Queued(depth int)
	// Taken is called when a worker takes a key; depth is how many keys still wait, and waited
	// is how long the key waited since it joined the line (measured on the process's monotonic
	// clock, not the engine's Clock: it measures the workers, not the runs' logic).
	Taken(depth int, waited time.Duration)
}

// queue hands out run keys to workers so that one worker owns a run at a time: a key added while
// it is queued is not queued twice, and a key added while a worker holds it is queued again when
// that worker is done with it.
type queue struct {
	mu   sync.Mutex
	cond *sync.Cond
	// released is signalled when a worker or an operation lets a key go.
	released *sync.Cond
	// running is set once workers take keys, until the queue is closed.
	running    bool
	items      []queued
	dirty      map[Key]struct{}
	processing map[Key]struct{}
	closed     bool
	obs        QueueObserver
}

// queued is a key in line, with when it joined the line (only when there is an observer).
type queued struct {
	key Key
	at  time.Time
}

func newQueue(obs QueueObserver) *queue {
	q := &queue{dirty: map[Key]struct{}{}, processing: map[Key]struct{}{}, obs: obs}
	q.cond = sync.NewCond(&q.mu)
	q.released = sync.NewCond(&q.mu)
	return q
}

// open marks the queue as served by workers: acquire works from now on.
func (q *queue) open() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.running = !q.closed
}

// acquire holds key as a worker does, waiting while a worker holds it, so that the caller may
// advance the run itself; done lets it go. It reports false, holding nothing, when no workers
// serve the queue (not started, or closed).
func (q *queue) acquire(key Key) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if !q.running || q.closed {
			return false
		}
		if _, busy := q.processing[key]; !busy {
			break
		}
		q.released.Wait()
	}
	q.processing[key] = struct{}{}
	delete(q.dirty, key)
	return true
}

// push puts key in line for a worker; q.mu is held.
func (q *queue) push(key Key) {
	item := queued{key: key}
	if q.obs != nil {
		item.at = time.Now()
	}
	q.items = append(q.items, item)
	if q.obs != nil {
		q.obs.Queued(len(q.items))
	}
	q.cond.Signal()
}

// add queues key unless it is already waiting.
func (q *queue) add(key Key) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if _, ok := q.dirty[key]; ok {
		return
	}
	q.dirty[key] = struct{}{}
	if _, ok := q.processing[key]; ok {
		return
	}
	q.push(key)
}

// get blocks until a key is ready or the queue is closed (ok false).
func (q *queue) get() (key Key, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.items) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.items) == 0 {
			return Key{}, false
		}
		item := q.items[0]
		q.items[0] = queued{}
		q.items = q.items[1:]
		key = item.key
		if _, busy := q.processing[key]; busy {
			// Held by an operation since it joined the line: done puts it back in line if it
			// was added meanwhile.
			continue
		}
		q.processing[key] = struct{}{}
		delete(q.dirty, key)
		if q.obs != nil {
			q.obs.Taken(len(q.items), time.Since(item.at))
		}
		return key, true
	}
}

// done releases key; if it was added meanwhile it is queued again.
func (q *queue) done(key Key) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	q.released.Broadcast()
	if _, ok := q.dirty[key]; ok && !q.closed {
		q.push(key)
	}
}

// has reports whether key is waiting for a worker or held by one.
func (q *queue) has(key Key) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, dirty := q.dirty[key]
	_, processing := q.processing[key]
	return dirty || processing
}

// close wakes every waiting worker; get then returns ok false once the queue is drained.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.running = false
	q.items = nil
	q.cond.Broadcast()
	q.released.Broadcast()
}
