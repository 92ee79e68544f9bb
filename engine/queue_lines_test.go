package engine

import "testing"

// TestQueueRunsUnderWayGoFirst: a key added with addFirst (a step's result to apply) is taken
// before keys added earlier with add; a key waiting in the second line that is added with
// addFirst moves up and is taken once; a key added while held is queued again when let go, in
// the first line if it was added there.
func TestQueueRunsUnderWayGoFirst(t *testing.T) {
	q := newQueue(nil)
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
	q := newQueue(nil)
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
