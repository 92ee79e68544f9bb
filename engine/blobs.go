package engine

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// A run's large values are kept apart from its record, so that a transition, which rewrites
// the record, does not rewrite them: a store keeps each such value once, as a blob named by the
// SHA-256 of its bytes, and the record holds a reference in its place. The values are the
// run's data that Limits.RunDataBytes counts: its variables (BlobRef, by name), and the items
// of its loops, the outputs of their iterations, the outputs kept of waiting steps and the
// memos of steps' side effects (SlotRef, by where they are). In memory the run keeps every
// value; a store asks SpillVars what to write, and FillVars and FillSlots put the values back
// when it loads a run.
const (
	// BlobThreshold is the size above which a value is kept as a blob: 64 KiB, so that a
	// record holds a handful of typical values (a status, a short document) inline and a
	// value worth a separate write, about a millisecond of SQLite's, goes apart.
	BlobThreshold = 64 << 10
	// InlineBudget is the default bound of the values a record holds inline: beyond it, the
	// largest of those above minBlob are kept as blobs too, so that many values just under
	// BlobThreshold do not make the record large either. A store may ask for less
	// (SpillVars).
	InlineBudget = 256 << 10
	// minBlob is the smallest value kept as a blob to keep within InlineBudget.
	minBlob = 1 << 10
)

// BlobRef is what a run's record holds in place of a value kept as a blob.
type BlobRef struct {
	// Hash is the hex SHA-256 of the value's JSON: the blob's name within its run.
	Hash string `json:"hash"`
	// Bytes is the value's length.
	Bytes int `json:"bytes"`
}

// The kinds of Slot: where in a run's record a value other than a variable is.
const (
	// SlotItem is item Index of the loop of step Step (Loop.Items).
	SlotItem = "item"
	// SlotOutput is output Name of iteration Index of the loop of step Step
	// (Iteration.Outputs).
	SlotOutput = "output"
	// SlotWaiting is output Name kept of step Step while it waits (StepRecord.Outputs).
	SlotWaiting = "waiting"
	// SlotMemo is the memo of action path Name of step Step (StepRecord.Memo).
	SlotMemo = "memo"
	// slotVar is variable Name (Run.Vars): its reference is in Spill.Blobs, not in a SlotRef.
	slotVar = "var"
)

// Slot says where a value is in a run's record.
type Slot struct {
	// Kind is SlotItem, SlotOutput, SlotWaiting or SlotMemo.
	Kind string `json:"kind"`
	// Step is the step whose record (Run.Steps) or loop (Run.Loops) holds the value.
	Step string `json:"step"`
	// Index is the item or iteration of a loop.
	Index int `json:"index,omitempty"`
	// Name is the output's name, or the memo's action path.
	Name string `json:"name,omitempty"`
}

func (s Slot) String() string {
	switch s.Kind {
	case slotVar:
		return "variable " + strconv.Quote(s.Name)
	case SlotItem:
		return fmt.Sprintf("item %d of loop %q", s.Index, s.Step)
	case SlotOutput:
		return fmt.Sprintf("output %q of iteration %d of loop %q", s.Name, s.Index, s.Step)
	case SlotWaiting:
		return fmt.Sprintf("output %q kept of step %q", s.Name, s.Step)
	}
	return fmt.Sprintf("memo %q of step %q", s.Name, s.Step)
}

// SlotRef is what a run's record holds in place of a value, other than a variable, kept as a
// blob: where the value goes, and the blob.
type SlotRef struct {
	Slot
	BlobRef
}

// Blob is a value to be kept as a blob: its name (the hex SHA-256 of Data) and its JSON.
type Blob struct {
	Hash string
	Data []byte
}

// Spill is a run's data as a store writes it.
type Spill struct {
	// Vars are the variables the record holds inline.
	Vars map[string]json.RawMessage
	// Blobs are the references the record holds for the others, by variable name.
	Blobs map[string]BlobRef
	// Loops and Steps are the run's loops and steps' records as the record holds them: the
	// values kept as blobs left out (an item left null), the others as the run has them.
	Loops map[string]*Loop
	Steps map[string]*StepRecord
	// Slots are the references the record holds for the values left out of Loops and Steps,
	// in a stable order.
	Slots []SlotRef
	// New are the blobs that must be stored before (or in the same transaction as) the
	// record: those this run has not seen stored.
	New []Blob
	// All are the blobs the record refers to, each once (New among them): what a write that
	// cannot count on any being stored already (a create replacing a run) stores.
	All []Blob
	// Unused are the blobs stored before that nothing refers to any more: a store may
	// delete them once the record is written.
	Unused []string
}

// spilled is what a run remembers of a value kept as a blob: its reference, the value it was
// computed for (the same slice, so that a value set anew is hashed again), and whether a store
// has it.
type spilled struct {
	ref    BlobRef
	data   *byte
	stored bool
}

// BlobHash names a blob: the hex SHA-256 of data.
func BlobHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// eachValue calls fn with every value of the run's data and where it is.
func (r *Run) eachValue(fn func(Slot, json.RawMessage)) {
	for name, v := range r.Vars {
		fn(Slot{Kind: slotVar, Name: name}, v)
	}
	for step, l := range r.Loops {
		if l == nil {
			continue
		}
		for i, v := range l.Items {
			fn(Slot{Kind: SlotItem, Step: step, Index: i}, v)
		}
		for i, it := range l.Iterations {
			if it == nil {
				continue
			}
			for name, v := range it.Outputs {
				fn(Slot{Kind: SlotOutput, Step: step, Index: i, Name: name}, v)
			}
		}
	}
	for step, rec := range r.Steps {
		if rec == nil {
			continue
		}
		for name, v := range rec.Outputs {
			fn(Slot{Kind: SlotWaiting, Step: step, Name: name}, v)
		}
		for name, v := range rec.Memo {
			fn(Slot{Kind: SlotMemo, Step: step, Name: name}, v)
		}
	}
}

// SpillVars says how a store writes the run's data: the values above BlobThreshold, and the
// largest of the others when together they exceed budget (InlineBudget when it is 0 or less),
// as blobs; the rest inline. Each value is hashed once for as long as the run holds it, and a
// blob is New only until SpillSaved says a store has it. It does not change the run: the
// loops and steps' records it leaves values out of are copies.
func (r *Run) SpillVars(budget int) Spill {
	if budget <= 0 {
		budget = InlineBudget
	}
	s := Spill{Loops: r.Loops, Steps: r.Steps}
	type sized struct {
		slot Slot
		n    int
	}
	var small []sized
	out := map[Slot]json.RawMessage{}
	inline := 0
	r.eachValue(func(slot Slot, v json.RawMessage) {
		switch {
		case len(v) > BlobThreshold:
			out[slot] = v
		default:
			inline += len(v)
			if len(v) >= minBlob {
				small = append(small, sized{slot, len(v)})
			}
		}
	})
	if inline > budget {
		slices.SortFunc(small, func(a, b sized) int {
			return cmp.Or(cmp.Compare(b.n, a.n), compareSlots(a.slot, b.slot))
		})
		for _, v := range small {
			if inline <= budget {
				break
			}
			out[v.slot] = r.value(v.slot)
			inline -= v.n
		}
	}
	s.Vars = r.Vars
	if len(out) > 0 {
		s.Vars = make(map[string]json.RawMessage, len(r.Vars))
		for name, v := range r.Vars {
			if _, ok := out[Slot{Kind: slotVar, Name: name}]; !ok {
				s.Vars[name] = v
			}
		}
	}
	before := map[string]bool{}
	for _, b := range r.blobs {
		if b.stored {
			before[b.ref.Hash] = true
		}
	}
	kept := make(map[Slot]spilled, len(out))
	queued := map[string]bool{}
	for slot, v := range out {
		b, ok := r.blobs[slot]
		if !ok || b.data != &v[0] || b.ref.Bytes != len(v) {
			b = spilled{ref: BlobRef{Hash: BlobHash(v), Bytes: len(v)}, data: &v[0]}
		}
		if slot.Kind == slotVar {
			if s.Blobs == nil {
				s.Blobs = map[string]BlobRef{}
			}
			s.Blobs[slot.Name] = b.ref
		} else {
			s.Slots = append(s.Slots, SlotRef{Slot: slot, BlobRef: b.ref})
		}
		if before[b.ref.Hash] {
			b.stored = true
		}
		if !queued[b.ref.Hash] {
			queued[b.ref.Hash] = true
			s.All = append(s.All, Blob{Hash: b.ref.Hash, Data: v})
			if !b.stored {
				s.New = append(s.New, Blob{Hash: b.ref.Hash, Data: v})
			}
		}
		kept[slot] = b
	}
	for h := range before {
		if !queued[h] {
			s.Unused = append(s.Unused, h)
		}
	}
	slices.Sort(s.Unused)
	byHash := func(a, b Blob) int { return cmp.Compare(a.Hash, b.Hash) }
	slices.SortFunc(s.New, byHash)
	slices.SortFunc(s.All, byHash)
	slices.SortFunc(s.Slots, func(a, b SlotRef) int { return compareSlots(a.Slot, b.Slot) })
	s.Loops, s.Steps = r.leaveOut(s.Slots)
	r.blobs = kept
	return s
}

// compareSlots orders slots by kind, step, index and name.
func compareSlots(a, b Slot) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Step, b.Step), cmp.Compare(a.Index, b.Index), cmp.Compare(a.Name, b.Name))
}

// value is the value at slot, nil when there is none.
func (r *Run) value(slot Slot) json.RawMessage {
	switch slot.Kind {
	case slotVar:
		return r.Vars[slot.Name]
	case SlotItem, SlotOutput:
		l := r.Loops[slot.Step]
		switch {
		case l == nil:
		case slot.Kind == SlotItem && slot.Index >= 0 && slot.Index < len(l.Items):
			return l.Items[slot.Index]
		case slot.Kind == SlotOutput && slot.Index >= 0 && slot.Index < len(l.Iterations) && l.Iterations[slot.Index] != nil:
			return l.Iterations[slot.Index].Outputs[slot.Name]
		}
	case SlotWaiting, SlotMemo:
		if rec := r.Steps[slot.Step]; rec != nil {
			if slot.Kind == SlotWaiting {
				return rec.Outputs[slot.Name]
			}
			return rec.Memo[slot.Name]
		}
	}
	return nil
}

// leaveOut returns the run's loops and steps' records without the values at slots: copies of
// those that hold one, the run's own for the others.
func (r *Run) leaveOut(slots []SlotRef) (map[string]*Loop, map[string]*StepRecord) {
	loops, steps := r.Loops, r.Steps
	type iteration struct {
		step  string
		index int
	}
	copiedLoops, copiedSteps, copiedIts := map[string]bool{}, map[string]bool{}, map[iteration]bool{}
	for _, ref := range slots {
		switch ref.Kind {
		case SlotItem, SlotOutput:
			if !copiedLoops[ref.Step] {
				if len(copiedLoops) == 0 {
					loops = maps.Clone(r.Loops)
				}
				copiedLoops[ref.Step] = true
				l := *loops[ref.Step]
				l.Items = slices.Clone(l.Items)
				l.Iterations = slices.Clone(l.Iterations)
				loops[ref.Step] = &l
			}
			l := loops[ref.Step]
			if ref.Kind == SlotItem {
				l.Items[ref.Index] = nil
				break
			}
			if at := (iteration{ref.Step, ref.Index}); !copiedIts[at] {
				copiedIts[at] = true
				it := *l.Iterations[ref.Index]
				it.Outputs = maps.Clone(it.Outputs)
				l.Iterations[ref.Index] = &it
			}
			delete(l.Iterations[ref.Index].Outputs, ref.Name)
		case SlotWaiting, SlotMemo:
			if !copiedSteps[ref.Step] {
				if len(copiedSteps) == 0 {
					steps = maps.Clone(r.Steps)
				}
				copiedSteps[ref.Step] = true
				rec := *steps[ref.Step]
				rec.Outputs, rec.Memo = maps.Clone(rec.Outputs), maps.Clone(rec.Memo)
				steps[ref.Step] = &rec
			}
			if ref.Kind == SlotWaiting {
				delete(steps[ref.Step].Outputs, ref.Name)
			} else {
				delete(steps[ref.Step].Memo, ref.Name)
			}
		}
	}
	return loops, steps
}

// SpillSaved tells the run that a store wrote s (its record and its New blobs), so that the
// next SpillVars does not ask for them again.
func (r *Run) SpillSaved(s Spill) {
	refs := make(map[Slot]BlobRef, len(s.Blobs)+len(s.Slots))
	for name, ref := range s.Blobs {
		refs[Slot{Kind: slotVar, Name: name}] = ref
	}
	for _, ref := range s.Slots {
		refs[ref.Slot] = ref.BlobRef
	}
	// A new map: a copy of the run (a stale one kept by a caller) may share the old one.
	saved := make(map[Slot]spilled, len(r.blobs))
	for slot, b := range r.blobs {
		if ref, ok := refs[slot]; ok && ref == b.ref {
			b.stored = true
		}
		saved[slot] = b
	}
	r.blobs = saved
}

// FillVars sets the run's variables from a stored record's: the inline ones, and those kept
// as blobs, whose values read returns by hash (every hash of refs, each asked once). A blob
// whose bytes do not have its hash is an error, as is one read does not return. It forgets
// the values FillSlots put back: call it first.
func (r *Run) FillVars(inline map[string]json.RawMessage, refs map[string]BlobRef, read func(hashes []string) (map[string][]byte, error)) error {
	r.Vars = inline
	r.blobs = nil
	if len(refs) == 0 {
		return nil
	}
	if r.Vars == nil {
		r.Vars = make(map[string]json.RawMessage, len(refs))
	}
	slots := make([]SlotRef, 0, len(refs))
	for name, ref := range refs {
		slots = append(slots, SlotRef{Slot: Slot{Kind: slotVar, Name: name}, BlobRef: ref})
	}
	return r.fill(slots, read)
}

// FillSlots puts back in the run's loops and steps' records, as a stored record has them,
// the values kept as blobs that slots refer to, read by hash as FillVars reads them. A slot
// the record has no place for is an error.
func (r *Run) FillSlots(slots []SlotRef, read func(hashes []string) (map[string][]byte, error)) error {
	for _, ref := range slots {
		if ref.Kind == slotVar || !r.hasPlace(ref.Slot) {
			return fmt.Errorf("run %s: the record refers to a blob for %s, which it has no place for", r.Key(), ref.Slot)
		}
	}
	return r.fill(slots, read)
}

// hasPlace reports whether the run's record has a place for the value at slot.
func (r *Run) hasPlace(slot Slot) bool {
	switch slot.Kind {
	case SlotItem, SlotOutput:
		l := r.Loops[slot.Step]
		if l == nil || slot.Index < 0 {
			return false
		}
		if slot.Kind == SlotItem {
			return slot.Index < len(l.Items)
		}
		return slot.Index < len(l.Iterations) && l.Iterations[slot.Index] != nil
	case SlotWaiting, SlotMemo:
		return r.Steps[slot.Step] != nil
	}
	return false
}

// fill reads the blobs of slots and puts each value in its place.
func (r *Run) fill(slots []SlotRef, read func(hashes []string) (map[string][]byte, error)) error {
	if len(slots) == 0 {
		return nil
	}
	var hashes []string
	for _, ref := range slots {
		if !slices.Contains(hashes, ref.Hash) {
			hashes = append(hashes, ref.Hash)
		}
	}
	slices.Sort(hashes)
	got, err := read(hashes)
	if err != nil {
		return fmt.Errorf("read the blobs of run %s: %w", r.Key(), err)
	}
	if r.blobs == nil {
		r.blobs = make(map[Slot]spilled, len(slots))
	}
	for _, ref := range slots {
		data, ok := got[ref.Hash]
		if !ok {
			return fmt.Errorf("run %s: %s refers to blob %s, which is not stored", r.Key(), ref.Slot, ref.Hash)
		}
		if len(data) != ref.Bytes || BlobHash(data) != ref.Hash {
			return fmt.Errorf("run %s: blob %s of %s does not hold the value it was stored with", r.Key(), ref.Hash, ref.Slot)
		}
		v := json.RawMessage(data)
		r.put(ref.Slot, v)
		if len(v) > 0 {
			r.blobs[ref.Slot] = spilled{ref: ref.BlobRef, data: &v[0], stored: true}
		}
	}
	return nil
}

// put sets the value at slot, which the run has a place for.
func (r *Run) put(slot Slot, v json.RawMessage) {
	set := func(m *map[string]json.RawMessage) {
		if *m == nil {
			*m = map[string]json.RawMessage{}
		}
		(*m)[slot.Name] = v
	}
	switch slot.Kind {
	case slotVar:
		set(&r.Vars)
	case SlotItem:
		r.Loops[slot.Step].Items[slot.Index] = v
	case SlotOutput:
		set(&r.Loops[slot.Step].Iterations[slot.Index].Outputs)
	case SlotWaiting:
		set(&r.Steps[slot.Step].Outputs)
	case SlotMemo:
		set(&r.Steps[slot.Step].Memo)
	}
}
