package store

import (
	"encoding/json"
	"fmt"

	"github.com/stepflow/stepflow/engine"
)

// record is a run as the SQL stores write its JSON: the run with only its inline values, and
// references to the others, kept as blobs (engine.Run.SpillVars): Blobs for its variables,
// Slots for its loops' items and outputs, its waiting steps' outputs and its memos.
type record struct {
	*engine.Run
	Blobs map[string]engine.BlobRef `json:"blobs,omitempty"`
	Slots []engine.SlotRef          `json:"slots,omitempty"`
}

// EncodeRun is the JSON the SQL stores write for run, its large values replaced by
// references, with the spill that says which blobs the write must store with it (New) and
// which it may delete (Unused). Once the write is committed, the store tells the run
// (engine.Run.SpillSaved).
func EncodeRun(run *engine.Run) ([]byte, engine.Spill, error) {
	spill := run.SpillVars(engine.InlineBudget)
	c := *run
	c.Vars, c.Loops, c.Steps = spill.Vars, spill.Loops, spill.Steps
	data, err := json.Marshal(record{Run: &c, Blobs: spill.Blobs, Slots: spill.Slots})
	if err != nil {
		return nil, spill, fmt.Errorf("encode run %s: %w", run.Key(), err)
	}
	return data, spill, nil
}

// DecodeRun is the run whose JSON EncodeRun wrote, its values kept as blobs read back with
// read, which returns the blobs of the run by hash.
func DecodeRun(data []byte, read func(hashes []string) (map[string][]byte, error)) (*engine.Run, error) {
	rec := record{Run: new(engine.Run)}
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	run := rec.Run
	if err := run.FillVars(run.Vars, rec.Blobs, read); err != nil {
		return nil, err
	}
	if err := run.FillSlots(rec.Slots, read); err != nil {
		return nil, err
	}
	return run, nil
}

// AllBlobs are the blobs spill refers to, each once: what a write must store when it cannot
// count on any being stored already (a Create, which replaces a run's blobs).
func AllBlobs(spill engine.Spill) []engine.Blob {
	return spill.All
}
