package engine_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

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
