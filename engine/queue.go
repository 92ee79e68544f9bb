package engine

import "sync"

// queue hands out run keys to workers so that one worker owns a run at a time: a key added while
// it is queued is not queued twice, and a key added while a worker holds it is queued again when
// that worker is done with it.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []Key
	dirty      map[Key]struct{}
	processing map[Key]struct{}
	closed     bool
}

func newQueue() *queue {
	q := &queue{dirty: map[Key]struct{}{}, processing: map[Key]struct{}{}}
	q.cond = sync.NewCond(&q.mu)
	return q
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
	q.items = append(q.items, key)
	q.cond.Signal()
}

// get blocks until a key is ready or the queue is closed (ok false).
func (q *queue) get() (key Key, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return Key{}, false
	}
	key = q.items[0]
	q.items[0] = Key{}
	q.items = q.items[1:]
	q.processing[key] = struct{}{}
	delete(q.dirty, key)
	return key, true
}

// done releases key; if it was added meanwhile it is queued again.
func (q *queue) done(key Key) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if _, ok := q.dirty[key]; ok && !q.closed {
		q.items = append(q.items, key)
		q.cond.Signal()
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
	q.items = nil
	q.cond.Broadcast()
}
