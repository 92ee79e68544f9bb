package engine

import (
	"sync"
	"time"
)

// queue hands out run keys to workers so that one worker owns a run at a time: a key added while
// it is queued is not queued twice, and a key added while a worker holds it is queued again when
// that worker is done with it.
//
// It has two lines. A key added with addFirst (a run with a step's result to apply: a run under
// way) goes before every key added with add (a run to start, a timer, a change read from the
// store): finishing the runs under way before starting others shortens the wait between one
// step and the next and keeps fewer runs half done. Within a line, first come, first served.
// A key in the second line that is added again with addFirst joins the first as well; whichever
// of its places comes first takes it, and the other is passed over.
//
// The second line waits while maxEvaluating step evaluations are under way (began, not ended):
// a burst of runs is started as the ones before it free the evaluator, rather than all at once
// and each holding its memory while it waits for the CPU. It also waits while maxSecond of its
// keys are held, so that some workers are always free for the first line, which never waits.
type queue struct {
	mu   sync.Mutex
	cond *sync.Cond
	// released is signalled when a worker or an operation lets a key go.
	released *sync.Cond
	// running is set once workers take keys, until the queue is closed.
	running    bool
	lines      [2][]queued
	dirty      map[Key]lineSet // the keys waiting, and in which lines
	processing map[Key]bool    // held keys; true for those taken from the second line
	closed     bool
	obs        QueueObserver
	// evaluating is how many step evaluations are under way; maxEvaluating, when positive,
	// is how many hold back the second line.
	evaluating, maxEvaluating int
	// second is how many keys taken from the second line are held; maxSecond, when positive,
	// is how many hold back that line.
	second, maxSecond int
}

// lineSet says which of a queue's lines hold a key.
type lineSet uint8

const (
	inFirst lineSet = 1 << iota
	inSecond
)

// queued is a key in line, with when it joined the line (only when there is an observer).
type queued struct {
	key Key
	at  time.Time
}

func newQueue(obs QueueObserver, maxEvaluating, maxSecond int) *queue {
	q := &queue{dirty: map[Key]lineSet{}, processing: map[Key]bool{}, obs: obs, maxEvaluating: maxEvaluating, maxSecond: maxSecond}
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
	q.processing[key] = false
	delete(q.dirty, key) // its places in line are passed over
	return true
}

// depth is how many places in line are taken; q.mu is held.
func (q *queue) depth() int { return len(q.lines[0]) + len(q.lines[1]) }

// next is the line a worker may take a key from now, nil for none; q.mu is held.
func (q *queue) next() *[]queued {
	switch {
	case len(q.lines[0]) > 0:
		return &q.lines[0]
	case len(q.lines[1]) > 0 && (q.maxEvaluating <= 0 || q.evaluating < q.maxEvaluating) &&
		(q.maxSecond <= 0 || q.second < q.maxSecond):
		return &q.lines[1]
	}
	return nil
}

// began counts a step evaluation under way.
func (q *queue) began() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.evaluating++
}

// ended counts one less: the second line may move again.
func (q *queue) ended() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.evaluating--
	q.cond.Signal()
}

// push puts key at the end of line in (inFirst or inSecond); q.mu is held.
func (q *queue) push(key Key, in lineSet) {
	item := queued{key: key}
	if q.obs != nil {
		item.at = time.Now()
	}
	i := 0
	if in == inSecond {
		i = 1
	}
	q.lines[i] = append(q.lines[i], item)
	if q.obs != nil {
		q.obs.Queued(q.depth())
	}
	q.cond.Signal()
}

// add queues key in the second line unless it is already waiting.
func (q *queue) add(key Key) { q.addTo(key, inSecond) }

// addFirst queues key in the first line unless it is there already: a run under way.
func (q *queue) addFirst(key Key) { q.addTo(key, inFirst) }

func (q *queue) addTo(key Key, in lineSet) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	set, waiting := q.dirty[key]
	if set&in != 0 || (waiting && in == inSecond) {
		return // waiting already, at least as early
	}
	q.dirty[key] = set | in
	if _, ok := q.processing[key]; ok {
		return // done puts it in line
	}
	q.push(key, in)
}

// get blocks until a key is ready or the queue is closed (ok false).
func (q *queue) get() (key Key, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		line := q.next()
		for line == nil && !q.closed {
			q.cond.Wait()
			line = q.next()
		}
		if line == nil {
			return Key{}, false
		}
		item := (*line)[0]
		(*line)[0] = queued{}
		*line = (*line)[1:]
		key = item.key
		if _, waiting := q.dirty[key]; !waiting {
			continue // taken from its other place, or by an operation, since it joined
		}
		if _, busy := q.processing[key]; busy {
			// Held by an operation since it joined the line: done puts it back in line if it
			// was added meanwhile.
			continue
		}
		fromSecond := line == &q.lines[1]
		q.processing[key] = fromSecond
		if fromSecond {
			q.second++
		}
		delete(q.dirty, key)
		if q.obs != nil {
			q.obs.Taken(q.depth(), time.Since(item.at))
		}
		return key, true
	}
}

// done releases key; if it was added meanwhile it is queued again.
func (q *queue) done(key Key) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.processing[key] {
		q.second--
		q.cond.Signal() // the second line may move again
	}
	delete(q.processing, key)
	q.released.Broadcast()
	if set, ok := q.dirty[key]; ok && !q.closed {
		if set&inFirst != 0 {
			set = inFirst
		}
		q.dirty[key] = set
		q.push(key, set)
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
	q.lines = [2][]queued{}
	q.cond.Broadcast()
	q.released.Broadcast()
}
