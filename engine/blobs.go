package engine

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
)

// A run's large variables are kept apart from its record, so that a transition, which rewrites
// the record, does not rewrite them: a store keeps each such value once, as a blob named by the
// SHA-256 of its bytes, and the record holds a BlobRef in its place. In memory the run keeps
// every value (Run.Vars); a store asks SpillVars what to write, and FillVars puts the values
// back when it loads a run.
const (
	// BlobThreshold is the size above which a variable is kept as a blob.
	BlobThreshold = 64 << 10
	// InlineBudget is the default bound of the variables a record holds inline: beyond it, the
	// largest of those above minBlob are kept as blobs too, so that many values just under
	// BlobThreshold do not make the record large either. A store may ask for less
	// (SpillVars).
	InlineBudget = 256 << 10
	// minBlob is the smallest value kept as a blob to keep within InlineBudget.
	minBlob = 1 << 10
)

// BlobRef is what a run's record holds in place of a variable kept as a blob.
type BlobRef struct {
	// Hash is the hex SHA-256 of the value's JSON: the blob's name within its run.
	Hash string `json:"hash"`
	// Bytes is the value's length.
	Bytes int `json:"bytes"`
}

// Blob is a value to be kept as a blob: its name (the hex SHA-256 of Data) and its JSON.
type Blob struct {
	Hash string
	Data []byte
}

// Spill is a run's variables as a store writes them.
type Spill struct {
	// Vars are the variables the record holds inline.
	Vars map[string]json.RawMessage
	// Blobs are the references the record holds for the others, by variable name.
	Blobs map[string]BlobRef
	// New are the blobs that must be stored before (or in the same transaction as) the
	// record: those this run has not seen stored.
	New []Blob
	// Unused are the blobs stored before that no variable refers to any more: a store may
	// delete them once the record is written.
	Unused []string
}

// spilled is what a run remembers of a variable kept as a blob: its reference, the value it
// was computed for (the same slice, so that a variable set anew is hashed again), and whether
// a store has it.
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

// SpillVars says how a store writes the run's variables: those above BlobThreshold, and the
// largest of the others when together they exceed budget (InlineBudget when it is 0 or
// less), as blobs; the rest inline. Each value is hashed once for as long as the run holds
// it, and a blob is New only until SpillSaved says a store has it. It does not change the
// run's variables.
func (r *Run) SpillVars(budget int) Spill {
	if budget <= 0 {
		budget = InlineBudget
	}
	var s Spill
	if len(r.Vars) == 0 && len(r.blobs) == 0 {
		return s
	}
	type sized struct {
		name string
		n    int
	}
	var small []sized
	out := map[string]bool{}
	inline := 0
	for name, v := range r.Vars {
		switch {
		case len(v) > BlobThreshold:
			out[name] = true
		default:
			inline += len(v)
			if len(v) >= minBlob {
				small = append(small, sized{name, len(v)})
			}
		}
	}
	if inline > budget {
		slices.SortFunc(small, func(a, b sized) int {
			return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.name, b.name))
		})
		for _, v := range small {
			if inline <= budget {
				break
			}
			out[v.name] = true
			inline -= v.n
		}
	}
	s.Vars = make(map[string]json.RawMessage, len(r.Vars)-len(out))
	for name, v := range r.Vars {
		if !out[name] {
			s.Vars[name] = v
		}
	}
	before := map[string]bool{}
	for _, b := range r.blobs {
		if b.stored {
			before[b.ref.Hash] = true
		}
	}
	kept := make(map[string]spilled, len(out))
	queued := map[string]bool{}
	for name := range out {
		v := r.Vars[name]
		b, ok := r.blobs[name]
		if !ok || b.data != &v[0] || b.ref.Bytes != len(v) {
			b = spilled{ref: BlobRef{Hash: BlobHash(v), Bytes: len(v)}, data: &v[0]}
		}
		if s.Blobs == nil {
			s.Blobs = map[string]BlobRef{}
		}
		s.Blobs[name] = b.ref
		if before[b.ref.Hash] {
			b.stored = true
		}
		if !b.stored && !queued[b.ref.Hash] {
			s.New = append(s.New, Blob{Hash: b.ref.Hash, Data: v})
			queued[b.ref.Hash] = true
		}
		kept[name] = b
	}
	referred := make(map[string]bool, len(s.Blobs))
	for _, ref := range s.Blobs {
		referred[ref.Hash] = true
	}
	for h := range before {
		if !referred[h] {
			s.Unused = append(s.Unused, h)
		}
	}
	slices.Sort(s.Unused)
	slices.SortFunc(s.New, func(a, b Blob) int { return cmp.Compare(a.Hash, b.Hash) })
	r.blobs = kept
	return s
}

// SpillSaved tells the run that a store wrote s (its record and its New blobs), so that the
// next SpillVars does not ask for them again.
func (r *Run) SpillSaved(s Spill) {
	// A new map: a copy of the run (a stale one kept by a caller) may share the old one.
	saved := make(map[string]spilled, len(r.blobs))
	for name, b := range r.blobs {
		if ref, ok := s.Blobs[name]; ok && ref == b.ref {
			b.stored = true
		}
		saved[name] = b
	}
	r.blobs = saved
}

// FillVars sets the run's variables from a stored record's: the inline ones, and those kept
// as blobs, whose values read returns by hash (every hash of refs, each asked once). A blob
// whose bytes do not have its hash is an error, as is one read does not return.
func (r *Run) FillVars(inline map[string]json.RawMessage, refs map[string]BlobRef, read func(hashes []string) (map[string][]byte, error)) error {
	r.Vars = inline
	r.blobs = nil
	if len(refs) == 0 {
		return nil
	}
	var hashes []string
	for _, ref := range refs {
		if !slices.Contains(hashes, ref.Hash) {
			hashes = append(hashes, ref.Hash)
		}
	}
	slices.Sort(hashes)
	got, err := read(hashes)
	if err != nil {
		return fmt.Errorf("read the blobs of run %s: %w", r.Key(), err)
	}
	if r.Vars == nil {
		r.Vars = make(map[string]json.RawMessage, len(refs))
	}
	r.blobs = make(map[string]spilled, len(refs))
	for name, ref := range refs {
		data, ok := got[ref.Hash]
		if !ok {
			return fmt.Errorf("run %s: variable %q refers to blob %s, which is not stored", r.Key(), name, ref.Hash)
		}
		if len(data) != ref.Bytes || BlobHash(data) != ref.Hash {
			return fmt.Errorf("run %s: blob %s of variable %q does not hold the value it was stored with", r.Key(), ref.Hash, name)
		}
		v := json.RawMessage(data)
		r.Vars[name] = v
		if len(v) > 0 {
			r.blobs[name] = spilled{ref: ref, data: &v[0], stored: true}
		}
	}
	return nil
}
