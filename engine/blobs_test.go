package engine_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

func value(c byte, n int) json.RawMessage {
	return json.RawMessage(`"` + strings.Repeat(string(c), n-2) + `"`)
}

// SpillVars keeps apart what is over BlobThreshold, then the largest of the rest until what
// stays inline is within the budget; it asks for a blob once until a store has it, and names
// the blobs no variable refers to any more.
func TestSpillVars(t *testing.T) {
	run := &engine.Run{Vars: map[string]json.RawMessage{
		"big":   value('b', engine.BlobThreshold+1),
		"small": value('s', 100),
	}}
	for i := range 10 {
		run.Vars[fmt.Sprintf("mid%d", i)] = value(byte('0'+i), 10<<10+i)
	}
	s := run.SpillVars(64 << 10)
	if _, ok := s.Blobs["big"]; !ok || len(s.Vars) != 7 || s.Vars["small"] == nil {
		t.Fatalf("inline %d variables, blobs %v: want big and the 4 largest mid apart", len(s.Vars), s.Blobs)
	}
	for _, name := range []string{"mid9", "mid8", "mid7", "mid6"} {
		if _, ok := s.Blobs[name]; !ok {
			t.Errorf("%s is inline, want it apart (the largest go first)", name)
		}
	}
	if len(s.New) != 5 || len(s.Unused) != 0 {
		t.Errorf("New %d, Unused %v; want 5 and none", len(s.New), s.Unused)
	}
	if again := run.SpillVars(64 << 10); len(again.New) != 5 {
		t.Errorf("before a store has them, %d blobs are new, want 5", len(again.New))
	}
	run.SpillSaved(s)
	if again := run.SpillVars(64 << 10); len(again.New) != 0 {
		t.Errorf("once stored, %d blobs are new again", len(again.New))
	}
	old, mid8 := s.Blobs["big"].Hash, s.Blobs["mid8"].Hash
	run.Vars["big"] = value('c', engine.BlobThreshold+1)
	run.Vars["copy"] = run.Vars["mid9"]
	delete(run.Vars, "mid8")
	s = run.SpillVars(64 << 10)
	if len(s.New) != 1 || s.New[0].Hash != engine.BlobHash(run.Vars["big"]) {
		t.Errorf("New = %d blobs, want only big's new value (a copy of a stored value is stored)", len(s.New))
	}
	if len(s.Unused) != 2 || !slices.Contains(s.Unused, old) || !slices.Contains(s.Unused, mid8) {
		t.Errorf("Unused = %v, want big's old value and mid8's", s.Unused)
	}
	if _, ok := s.Blobs["copy"]; !ok {
		t.Error("copy, one of the largest inline now, is not apart")
	}
}

// The values of loops and steps' records are kept apart as variables are: the record SpillVars
// gives leaves them out (a copy: the run keeps them), refers to each by where it is, and
// FillSlots puts them back where they were.
func TestSpillSlots(t *testing.T) {
	big := func(c byte) json.RawMessage { return value(c, engine.BlobThreshold+1) }
	run := &engine.Run{
		Object: &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "slots"}},
		Loops: map[string]*engine.Loop{"each": {
			Items:      []json.RawMessage{big('i'), json.RawMessage(`"small"`)},
			Iterations: []*engine.Iteration{{Outputs: map[string]json.RawMessage{"out": big('o'), "n": json.RawMessage(`1`)}}},
		}},
		Steps: map[string]*engine.StepRecord{
			"wait": {Outputs: map[string]json.RawMessage{"kept": big('w')}, Memo: map[string]json.RawMessage{"http.#Do": big('m')}},
			"done": {Attempt: 1},
		},
	}
	s := run.SpillVars(0)
	want := []engine.Slot{
		{Kind: engine.SlotItem, Step: "each"},
		{Kind: engine.SlotMemo, Step: "wait", Name: "http.#Do"},
		{Kind: engine.SlotOutput, Step: "each", Name: "out"},
		{Kind: engine.SlotWaiting, Step: "wait", Name: "kept"},
	}
	var got []engine.Slot
	for _, ref := range s.Slots {
		got = append(got, ref.Slot)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("slots %v, want %v", got, want)
	}
	if len(s.New) != 4 || len(s.All) != 4 {
		t.Errorf("New %d, All %d blobs, want 4 and 4", len(s.New), len(s.All))
	}
	if s.Loops["each"].Items[0] != nil || string(s.Loops["each"].Items[1]) != `"small"` || s.Loops["each"].Iterations[0].Outputs["out"] != nil ||
		s.Steps["wait"].Outputs["kept"] != nil || s.Steps["wait"].Memo["http.#Do"] != nil || s.Steps["done"] != run.Steps["done"] {
		t.Error("the record's loops and steps hold a large value, or lost a small one")
	}
	if len(run.Loops["each"].Items[0]) != engine.BlobThreshold+1 || run.Loops["each"].Iterations[0].Outputs["out"] == nil ||
		run.Steps["wait"].Outputs["kept"] == nil || run.Steps["wait"].Memo["http.#Do"] == nil {
		t.Fatal("SpillVars took a value out of the run itself")
	}

	// Loaded back: the record's loops and steps with the blobs put in their places.
	stored := map[string][]byte{}
	for _, b := range s.All {
		stored[b.Hash] = b.Data
	}
	loaded := &engine.Run{Object: run.Object, Loops: s.Loops, Steps: s.Steps}
	read := func(hashes []string) (map[string][]byte, error) { return stored, nil }
	if err := loaded.FillVars(nil, nil, read); err != nil {
		t.Fatal(err)
	}
	if err := loaded.FillSlots(s.Slots, read); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded.Loops["each"].Items[0], run.Loops["each"].Items[0]) ||
		!slices.Equal(loaded.Steps["wait"].Memo["http.#Do"], run.Steps["wait"].Memo["http.#Do"]) ||
		!slices.Equal(loaded.Loops["each"].Iterations[0].Outputs["out"], run.Loops["each"].Iterations[0].Outputs["out"]) {
		t.Error("a value does not come back to its place")
	}
	if again := loaded.SpillVars(0); len(again.New) != 0 || len(again.Slots) != 4 {
		t.Errorf("a loaded run asks to store %d blobs again (%d slots)", len(again.New), len(again.Slots))
	}
	// A record that refers to a place it does not have is refused, not a panic.
	bad := []engine.SlotRef{{Slot: engine.Slot{Kind: engine.SlotOutput, Step: "each", Index: 7, Name: "out"}, BlobRef: s.Slots[0].BlobRef}}
	if err := loaded.FillSlots(bad, read); err == nil || !strings.Contains(err.Error(), `iteration 7 of loop "each"`) {
		t.Errorf("FillSlots of a slot with no place: %v", err)
	}
}
