package redact_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/stepflow/stepflow/redact"
)

func TestString(t *testing.T) {
	for _, c := range []struct {
		name   string
		values []string
		in     string
		want   string
	}{
		{"substring", []string{"hunter2!"}, "the password is hunter2!, really", "the password is <redacted>, really"},
		{"every occurrence", []string{"s3cr3t"}, "s3cr3t and s3cr3ts3cr3t", "<redacted> and <redacted>"},
		{"overlapping values are one mask", []string{"abcdef", "defghi"}, "xx abcdefghi yy", "xx <redacted> yy"},
		{"a value inside another", []string{"token-1234", "1234"}, "token-1234 1234", "<redacted> <redacted>"},
		{"overlapping occurrences of one value", []string{"aaaa"}, "aaaaaa!", "<redacted>!"},
		{"short values are ignored", []string{"abc", "a", ""}, "abc a b c", "abc a b c"},
		{"JSON-escaped form", []string{`pa"ss\word`}, `{"password":"pa\"ss\\word"}`, `{"password":"<redacted>"}`},
		{"HTML-escaped JSON form", []string{"<tok&en>"}, `"\u003ctok\u0026en\u003e"`, `"<redacted>"`},
		{"Go-quoted form with a newline", []string{"line1\nline2"}, `conflicting values "line1\nline2" and 3`, `conflicting values "<redacted>" and 3`},
		{"nothing to hide", []string{"secret"}, "all clear", "all clear"},
		{"multi-byte text", []string{"пароль-42"}, "ключ: пароль-42.", "ключ: <redacted>."},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := redact.New(c.values...).String(c.in); got != c.want {
				t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	var nilRedactor *redact.Redactor
	if !nilRedactor.Empty() || nilRedactor.String("anything") != "anything" || string(nilRedactor.JSON([]byte(`"x"`))) != `"x"` {
		t.Error("a nil Redactor changed something")
	}
	if !redact.New("abc").Empty() {
		t.Error("a Redactor of only short values is not empty")
	}
}

func TestJSON(t *testing.T) {
	r := redact.New("tok-9f8e7d", "123456")
	in := `{"z": "Bearer tok-9f8e7d", "a": [1, 123456, 1234567, true, null, {"tok-9f8e7d": "k"}], "m": "has \"tok-9f8e7d\" quoted"}`
	got := string(r.JSON([]byte(in)))
	want := `{"z":"Bearer <redacted>","a":[1,"<redacted>","<redacted>",true,null,{"<redacted>":"k"}],"m":"has \"<redacted>\" quoted"}`
	if got != want {
		t.Errorf("JSON:\n got %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Errorf("not JSON: %s", got)
	}

	// A secret made of JSON's own punctuation stays inside the strings it is in.
	r = redact.New(`","x":"`)
	got = string(r.JSON([]byte(`{"a":"1\",\"x\":\"2","b":3}`)))
	if got != `{"a":"1<redacted>2","b":3}` {
		t.Errorf("punctuation: %s", got)
	}

	// Not JSON: redacted as text.
	if got := string(redact.New("secret-1").JSON([]byte("plain secret-1 text"))); got != "plain <redacted> text" {
		t.Errorf("not JSON: %s", got)
	}
}

func TestLeavesAndMerge(t *testing.T) {
	var v any
	if err := json.Unmarshal([]byte(`{"user": "admin", "pass": ["p4ssw0rd", 98765], "on": true, "nil": null}`), &v); err != nil {
		t.Fatal(err)
	}
	leaves := redact.Leaves(v)
	slices.Sort(leaves)
	if want := []string{"98765", "admin", "p4ssw0rd"}; !slices.Equal(leaves, want) {
		t.Errorf("Leaves = %q, want %q", leaves, want)
	}

	set := redact.Merge(nil, "zzzz", "abc", "mmmm", "zzzz")
	if want := []string{"mmmm", "zzzz"}; !slices.Equal(set, want) {
		t.Errorf("Merge = %q, want %q", set, want)
	}
	kept := set
	more := redact.Merge(set, "aaaa")
	if !slices.Equal(kept, []string{"mmmm", "zzzz"}) || !slices.Equal(more, []string{"aaaa", "mmmm", "zzzz"}) {
		t.Errorf("Merge changed the set it was given: %q, %q", kept, more)
	}
}
