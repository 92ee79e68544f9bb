package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// mustRecord is the stored record kind/key.
func mustRecord(t *testing.T, st store.Store, kind, key string) store.Record {
	t.Helper()
	r, err := st.Record(t.Context(), kind, key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testRecords(t *testing.T, st store.Store) {
	ctx := t.Context()
	v1, err := st.PutRecord(ctx, "token", "t1", []byte(`{"role":"admin"}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if v1 <= 0 {
		t.Fatalf("PutRecord created version %d, want a positive one", v1)
	}
	if r := mustRecord(t, st, "token", "t1"); r.Key != "t1" || string(r.Data) != `{"role":"admin"}` || r.Version != v1 {
		t.Errorf("Record = {%s %s %d}, want {t1 {\"role\":\"admin\"} %d}", r.Key, r.Data, r.Version, v1)
	}

	// Creating it again fails and changes nothing.
	if _, err := st.PutRecord(ctx, "token", "t1", []byte("other"), 0); !errors.Is(err, store.ErrExists) {
		t.Errorf("PutRecord at version 0 of a stored record: err = %v, want store.ErrExists", err)
	}
	// The same key of another kind is another record.
	vt, err := st.PutRecord(ctx, "trigger", "t1", []byte("hook"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := mustRecord(t, st, "token", "t1"); string(r.Data) != `{"role":"admin"}` || r.Version != v1 {
		t.Errorf("token t1 after a refused create and another kind's put = {%s %d}, want it unchanged at %d", r.Data, r.Version, v1)
	}

	// An update at the stored version writes and moves the version on.
	v2, err := st.PutRecord(ctx, "token", "t1", []byte(`{"role":"viewer"}`), v1)
	if err != nil {
		t.Fatal(err)
	}
	if v2 <= v1 || v2 == vt {
		t.Errorf("update set version %d after %d (another record has %d): want a new, larger one", v2, v1, vt)
	}
	if r := mustRecord(t, st, "token", "t1"); string(r.Data) != `{"role":"viewer"}` || r.Version != v2 {
		t.Errorf("Record after the update = {%s %d}, want {{\"role\":\"viewer\"} %d}", r.Data, r.Version, v2)
	}
	// An update at an older version conflicts and changes nothing.
	if _, err := st.PutRecord(ctx, "token", "t1", []byte("stale"), v1); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("PutRecord at an old version: err = %v, want ErrConflict", err)
	}
	if r := mustRecord(t, st, "token", "t1"); string(r.Data) != `{"role":"viewer"}` || r.Version != v2 {
		t.Errorf("Record after a conflict = {%s %d}, want it unchanged at %d", r.Data, r.Version, v2)
	}
	// An update of a record not stored finds nothing.
	if _, err := st.PutRecord(ctx, "token", "missing", []byte("x"), v2); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("PutRecord of a missing record at version %d: err = %v, want ErrNotFound", v2, err)
	}
	if _, err := st.Record(ctx, "token", "missing"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Record of a missing record: err = %v, want ErrNotFound", err)
	}
	if _, err := st.Record(ctx, "cluster", "t1"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Record of a kind without that key: err = %v, want ErrNotFound", err)
	}

	// Empty data is data.
	if _, err := st.PutRecord(ctx, "token", "empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	if r := mustRecord(t, st, "token", "empty"); len(r.Data) != 0 {
		t.Errorf("Record stored with no data has %q", r.Data)
	}

	// Delete.
	if err := st.DeleteRecord(ctx, "token", "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Record(ctx, "token", "t1"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Record after DeleteRecord: err = %v, want ErrNotFound", err)
	}
	if err := st.DeleteRecord(ctx, "token", "t1"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("second DeleteRecord: err = %v, want ErrNotFound", err)
	}
	if _, err := st.PutRecord(ctx, "token", "t1", []byte("x"), v2); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("PutRecord of a deleted record at its last version: err = %v, want ErrNotFound", err)
	}
	if r := mustRecord(t, st, "trigger", "t1"); string(r.Data) != "hook" {
		t.Errorf("the other kind's record after the delete = %q, want it kept", r.Data)
	}

	// Bad arguments.
	for _, c := range []struct {
		kind, key string
		version   int64
	}{{"", "k", 0}, {"token", "", 0}, {"token", "k", -1}} {
		if _, err := st.PutRecord(ctx, c.kind, c.key, nil, c.version); err == nil {
			t.Errorf("PutRecord(%q, %q, version %d): no error", c.kind, c.key, c.version)
		}
	}
}

// Records selects by a prefix taken literally, LIKE's wildcards included, and orders by key
// byte by byte.
func testRecordPrefixes(t *testing.T, st store.Store) {
	ctx := t.Context()
	keys := []string{"b", "ab", "a_b", "a%c", "axb", "a", "a%", "a%b", "B", "a\\b", "é", "default/deploy/1", "default/deploy/2", "default/deploy2/1"}
	for _, k := range keys {
		if _, err := st.PutRecord(ctx, "trigger", k, []byte("data of "+k), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.PutRecord(ctx, "token", "a%other-kind", nil, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ prefix, want string }{
		{"", `[B a a% a%b a%c a\b a_b ab axb b default/deploy/1 default/deploy/2 default/deploy2/1 é]`},
		{"a%", "[a% a%b a%c]"},
		{"a_", "[a_b]"},
		{"a\\", `[a\b]`},
		{"a", `[a a% a%b a%c a\b a_b ab axb]`},
		{"default/deploy/", "[default/deploy/1 default/deploy/2]"},
		{"default/deploy", "[default/deploy/1 default/deploy/2 default/deploy2/1]"},
		{"é", "[é]"},
		{"%", "[]"},
		{"_", "[]"},
		{"c", "[]"},
		{"axb-longer", "[]"},
	} {
		recs, err := st.Records(ctx, "trigger", c.prefix)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.Key)
			if string(r.Data) != "data of "+r.Key || r.Version <= 0 {
				t.Errorf("Records(%q) has {%s %q %d}, want its data and version", c.prefix, r.Key, r.Data, r.Version)
			}
		}
		if fmt.Sprint(got) != c.want && !(got == nil && c.want == "[]") {
			t.Errorf("Records(trigger, %q) = %v, want %s", c.prefix, got, c.want)
		}
	}
	if recs, err := st.Records(ctx, "cluster", ""); err != nil || len(recs) != 0 {
		t.Errorf("Records of a kind with none = %v, %v; want none", recs, err)
	}
}

// Records' versions and runs' come from one counter: none is handed out twice, not even
// after a delete.
func testRecordVersions(t *testing.T, st store.Store) {
	ctx := t.Context()
	seen := map[int64]string{}
	note := func(v int64, what string) {
		t.Helper()
		if prev, ok := seen[v]; ok {
			t.Errorf("version %d of %s was %s's already", v, what, prev)
		}
		seen[v] = what
	}
	v, err := st.PutRecord(ctx, "token", "a", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	note(v, "record a")
	run := NewRun("default", "r")
	if err := st.Save(ctx, run, nil); err != nil {
		t.Fatal(err)
	}
	note(run.Version, "run r")
	if v, err = st.PutRecord(ctx, "token", "a", nil, v); err != nil {
		t.Fatal(err)
	}
	note(v, "record a updated")
	if err := st.DeleteRecord(ctx, "token", "a"); err != nil {
		t.Fatal(err)
	}
	again, err := st.PutRecord(ctx, "token", "a", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	note(again, "record a created again")
	if again <= v {
		t.Errorf("record created again at version %d, not above the deleted one's %d", again, v)
	}
	// The deleted record's holder cannot overwrite the new one.
	if _, err := st.PutRecord(ctx, "token", "a", []byte("stale"), v); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("PutRecord at the deleted record's version: err = %v, want ErrConflict", err)
	}
	if err := st.Save(ctx, run, nil); err != nil {
		t.Fatal(err)
	}
	note(run.Version, "run r saved again")
}
