package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Sizer tells what a store keeps of a run: the suite checks through it, when a store
// implements it, that large variables stay out of the record every save rewrites.
type Sizer interface {
	// RecordBytes is the size of the run's record: what one save of it writes, blobs aside.
	RecordBytes(ctx context.Context, key engine.Key) (int, error)
	// BlobBytes is the size of the blobs the store keeps for the run.
	BlobBytes(ctx context.Context, key engine.Key) (int, error)
}

// The case: 30 outputs of 0.9 MB, saved over 20 steps.
const (
	largeOutputs = 30
	largeBytes   = 900_000
	largeSteps   = 20
	// maxRecordBytes is what the record of such a run may take: its inline variables
	// (engine.InlineBudget) and the rest of NewRun's, with room to spare, a hundredth of the
	// 27 MB the outputs take.
	maxRecordBytes = engine.InlineBudget + 64<<10
)

// LargeValue is the JSON of a string of n bytes, different for each i.
func LargeValue(i, n int) json.RawMessage {
	head := fmt.Sprintf(`"value %d `, i)
	return json.RawMessage(head + strings.Repeat(string(rune('a'+i%26)), n-len(head)-1) + `"`)
}

// testLargeValues: a run whose steps output 27 MB keeps them whole through saves and loads,
// while every save writes a record that stays small (when the store is a Sizer); a variable
// set anew or dropped takes its blob with it; a stale copy still conflicts.
func testLargeValues(t *testing.T, st engine.Store) {
	ctx := t.Context()
	sizer, _ := st.(Sizer)
	run := NewRun("large", "run")
	mustSave(t, st, run, nil)
	want := map[string]json.RawMessage{}
	for step := range largeSteps {
		// The outputs come in the first steps, three at a time; the rest only move the run on.
		for i := step * 3; i < min(step*3+3, largeOutputs); i++ {
			name := fmt.Sprintf("out%02d", i)
			run.Vars[name] = LargeValue(i, largeBytes)
			want[name] = run.Vars[name]
		}
		run.Object.Status.Message = fmt.Sprintf("step %d", step)
		mustSave(t, st, run, []engine.LogEntry{{Step: "fetch", Message: fmt.Sprintf("step %d", step)}})
		if sizer == nil {
			continue
		}
		n, err := sizer.RecordBytes(ctx, run.Key())
		if err != nil {
			t.Fatal(err)
		}
		if n > maxRecordBytes {
			t.Fatalf("after step %d the run's record is %d bytes, more than %d: its large variables are in it", step, n, maxRecordBytes)
		}
	}
	got := mustLoad(t, st, run.Key())
	for name, v := range want {
		if !bytes.Equal(got.Vars[name], v) {
			t.Fatalf("variable %s is %d bytes after a load, want the %d saved", name, len(got.Vars[name]), len(v))
		}
	}
	assertJSON(t, "variable body", got.Vars["body"], `{"items":[1,2,3],"ok":true}`)
	if got.Object.Status.Message != fmt.Sprintf("step %d", largeSteps-1) {
		t.Errorf("message = %q", got.Object.Status.Message)
	}

	// From the loaded copy: one output set anew, one dropped, one copied under another name.
	stale := mustLoad(t, st, run.Key())
	got.Vars["out00"] = LargeValue(100, largeBytes)
	delete(got.Vars, "out01")
	got.Vars["copy"] = got.Vars["out02"]
	mustSave(t, st, got, nil)
	again := mustLoad(t, st, run.Key())
	if _, ok := again.Vars["out01"]; ok {
		t.Error("a variable deleted is still there after a load")
	}
	if !bytes.Equal(again.Vars["out00"], LargeValue(100, largeBytes)) || !bytes.Equal(again.Vars["copy"], want["out02"]) {
		t.Error("a variable set anew, or copied, does not load as saved")
	}
	if sizer != nil {
		n, err := sizer.BlobBytes(ctx, run.Key())
		if err != nil {
			t.Fatal(err)
		}
		if wantBlobs := (largeOutputs - 1) * largeBytes; n != wantBlobs {
			t.Errorf("the run's blobs are %d bytes, want %d: those of the variables set anew or dropped are kept", n, wantBlobs)
		}
	}
	stale.Vars["out05"] = LargeValue(105, largeBytes)
	if err := st.Save(ctx, stale, nil); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("Save of a stale run: err = %v, want ErrConflict", err)
	}
	if v := mustLoad(t, st, run.Key()).Vars["out05"]; !bytes.Equal(v, want["out05"]) {
		t.Error("a conflicting save changed a variable")
	}
	again.Object.Status.Phase = v1alpha1.RunSucceeded
	mustSave(t, st, again, nil)
}

// testLargeLoopValues: the large items of a loop, its iterations' outputs, a waiting step's
// kept outputs and a memo stay out of the record every save rewrites, as variables do, and
// load back in their places; a memo replaced takes its old blob with it.
func testLargeLoopValues(t *testing.T, st engine.Store) {
	ctx := t.Context()
	sizer, _ := st.(Sizer)
	const n, size = 10, 200_000
	run := NewRun("large", "loop")
	items := make([]json.RawMessage, n)
	for i := range items {
		items[i] = LargeValue(i, size)
	}
	run.Loops = map[string]*engine.Loop{"fetch": {Items: items}}
	mustSave(t, st, run, nil)
	rec := run.Steps["fetch"]
	for i := range n {
		l := run.Loops["fetch"]
		l.Iterations = append(l.Iterations, &engine.Iteration{Item: fmt.Sprint(i), Outputs: map[string]json.RawMessage{
			"out": LargeValue(100+i, size), "small": json.RawMessage(fmt.Sprint(i)),
		}})
		rec.Memo = map[string]json.RawMessage{"http.#Do": LargeValue(200+i, size)}
		rec.Outputs = map[string]json.RawMessage{"partial": LargeValue(300+i, size)}
		mustSave(t, st, run, nil)
		if sizer == nil {
			continue
		}
		got, err := sizer.RecordBytes(ctx, run.Key())
		if err != nil {
			t.Fatal(err)
		}
		if got > maxRecordBytes {
			t.Fatalf("after iteration %d the run's record is %d bytes, more than %d: its loop's or steps' large values are in it", i, got, maxRecordBytes)
		}
	}
	got := mustLoad(t, st, run.Key())
	l := got.Loops["fetch"]
	if l == nil || len(l.Items) != n || len(l.Iterations) != n {
		t.Fatalf("loaded loop %+v, want %d items and iterations", l, n)
	}
	for i := range n {
		if !bytes.Equal(l.Items[i], items[i]) {
			t.Errorf("item %d is %d bytes after a load, want the %d saved", i, len(l.Items[i]), len(items[i]))
		}
		if out := l.Iterations[i].Outputs; !bytes.Equal(out["out"], LargeValue(100+i, size)) || string(out["small"]) != fmt.Sprint(i) {
			t.Errorf("iteration %d's outputs do not load as saved", i)
		}
	}
	if !bytes.Equal(got.Steps["fetch"].Memo["http.#Do"], LargeValue(200+n-1, size)) ||
		!bytes.Equal(got.Steps["fetch"].Outputs["partial"], LargeValue(300+n-1, size)) {
		t.Error("the step's memo or kept outputs do not load as last saved")
	}
	if sizer != nil {
		got, err := sizer.BlobBytes(ctx, run.Key())
		if err != nil {
			t.Fatal(err)
		}
		if want := (2*n + 2) * size; got != want {
			t.Errorf("the run's blobs are %d bytes, want %d: those of memos and outputs replaced are kept", got, want)
		}
	}
}
