package engine

import (
	"testing"
	"time"
)

// TestQueueRunsUnderWayGoFirst: a key added with addFirst (a step's result to apply) is taken
// before keys added earlier with add; a key waiting in the second line that is added with
// addFirst moves up and is taken once; a key added while held is queued again when let go, in
// the first line if it was added there.
func TestQueueRunsUnderWayGoFirst(t *testing.T) {
	q := newQueue(nil, 0, 0)
	k := func(name string) Key { return Key{Namespace: "default", Name: name} }
	for _, n := range []string{"a", "b", "c", "d"} {
		q.add(k(n))
	}
	q.addFirst(k("c"))
	q.add(k("c")) // already waiting, earlier
	q.addFirst(k("e"))
	var got []string
	for range 6 {
		key, ok := q.get()
		if !ok {
			t.Fatal("queue closed")
		}
		got = append(got, key.Name)
		if key.Name == "e" && len(got) == 2 {
			q.add(k("e"))
			q.addFirst(k("e")) // while held
		}
		q.done(key)
	}
	want := []string{"c", "e", "e", "a", "b", "d"}
	if len(got) != len(want) {
		t.Fatalf("taken %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("taken in the order %v, want %v", got, want)
		}
	}
	var rest []string
	q.close()
	for {
		key, ok := q.get()
		if !ok {
			break
		}
		rest = append(rest, key.Name)
	}
	if len(rest) != 0 {
		t.Fatalf("a closed queue still hands out %v", rest)
	}
}

// TestQueueTakesAKeyOnceFromTwoPlaces: a key in both lines is taken once; its place in the
// second line is passed over.
func TestQueueTakesAKeyOnceFromTwoPlaces(t *testing.T) {
	q := newQueue(nil, 0, 0)
	a, b := Key{Name: "a"}, Key{Name: "b"}
	q.add(a)
	q.add(b)
	q.addFirst(a)
	var got []string
	for range 2 {
		key, _ := q.get()
		got = append(got, key.Name)
		q.done(key)
	}
	if got[0] != "a" || got[1] != "b" {
		t.Fatalf("taken %v, want [a b]", got)
	}
	q.add(Key{Name: "z"})
	if key, _ := q.get(); key.Name != "z" {
		t.Fatalf("a key already taken was handed out again: %s", key.Name)
	}
}

// TestQueueHoldsBackTheSecondLine: while maxEvaluating evaluations are under way, keys in the
// second line wait and keys in the first do not; the second line moves once one ends.
func TestQueueHoldsBackTheSecondLine(t *testing.T) {
	q := newQueue(nil, 1, 0)
	q.began()
	q.add(Key{Name: "start"})
	q.addFirst(Key{Name: "under-way"})
	if key, _ := q.get(); key.Name != "under-way" {
		t.Fatalf("taken first: %s", key.Name)
	}
	heldBack(t, q, "start", "the evaluations under way are at the limit", q.ended)
}

// TestQueueKeepsWorkersForRunsUnderWay: while maxSecond keys taken from the second line are
// held, the second line waits and the first does not; it moves once one of them is done.
func TestQueueKeepsWorkersForRunsUnderWay(t *testing.T) {
	q := newQueue(nil, 0, 1)
	q.add(Key{Name: "a"})
	q.add(Key{Name: "b"})
	a, _ := q.get()
	q.addFirst(Key{Name: "under-way"})
	if key, _ := q.get(); key.Name != "under-way" {
		t.Fatalf("taken: %s", key.Name)
	}
	heldBack(t, q, "b", "a key of the second line is held", func() { q.done(a) })
}

// heldBack checks that no key is taken from q (while: why none may be), then that want is
// taken once release has run.
func heldBack(t *testing.T, q *queue, want, while string, release func()) {
	t.Helper()
	got := make(chan Key, 1)
	go func() {
		key, _ := q.get()
		got <- key
	}()
	select {
	case key := <-got:
		t.Fatalf("%s taken while %s", key.Name, while)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	select {
	case key := <-got:
		if key.Name != want {
			t.Fatalf("taken: %s, want %s", key.Name, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s not taken once released", want)
	}
}
