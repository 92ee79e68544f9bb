// Package redact hides sensitive values in what stepflow shows: a Redactor replaces every
// occurrence of the values it was made from, and of their escaped forms (as they appear
// inside JSON or Go-quoted text), with Mask.
//
// Values shorter than MinLength are never redacted: replacing every "a" or "on" in a message
// would destroy the text while hiding nothing a reader could not guess.
package redact

import (
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Mask replaces each sensitive value.
const Mask = "<redacted>"

// MinLength is the length, in bytes, below which a value is not treated as sensitive.
const MinLength = 4

// Redactor replaces sensitive values in text. The zero value and nil redact nothing; a
// Redactor is safe for concurrent use.
type Redactor struct {
	// needles are the texts to hide: each value and its escaped forms, longest first.
	needles []string
}

// New returns a Redactor of values; values shorter than MinLength are ignored.
func New(values ...string) *Redactor {
	var needles []string
	for _, v := range values {
		if len(v) < MinLength {
			continue
		}
		needles = append(needles, v)
		for _, f := range escapedForms(v) {
			if f != v && len(f) >= MinLength {
				needles = append(needles, f)
			}
		}
	}
	slices.SortFunc(needles, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	return &Redactor{needles: slices.Compact(needles)}
}

// escapedForms are the ways v is written inside quoted text: JSON as Go encodes it (with and
// without HTML escapes) and Go's quoting, which CUE's messages use too.
func escapedForms(v string) []string {
	var forms []string
	if b, err := json.Marshal(v); err == nil {
		forms = append(forms, string(b[1:len(b)-1]))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		forms = append(forms, string(b[1:len(b)-1]))
	}
	q := strconv.Quote(v)
	return append(forms, q[1:len(q)-1])
}

// Empty reports whether the Redactor redacts nothing.
func (r *Redactor) Empty() bool { return r == nil || len(r.needles) == 0 }

// String returns s with every occurrence of a sensitive value replaced by Mask. Occurrences
// that overlap or touch are replaced by one Mask, so that no part of either shows.
func (r *Redactor) String(s string) string {
	if r.Empty() || len(s) < MinLength {
		return s
	}
	var spans []span
	for _, n := range r.needles {
		for from := 0; from < len(s); {
			i := strings.Index(s[from:], n)
			if i < 0 {
				break
			}
			spans = append(spans, span{from + i, from + i + len(n)})
			from += i + 1
		}
	}
	if len(spans) == 0 {
		return s
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	var b strings.Builder
	last := 0
	for i := 0; i < len(spans); {
		start, end := spans[i].start, spans[i].end
		for i++; i < len(spans) && spans[i].start <= end; i++ {
			end = max(end, spans[i].end)
		}
		b.WriteString(s[last:start])
		b.WriteString(Mask)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// span is an occurrence of a needle in a text: bytes [start, end).
type span struct{ start, end int }

// JSON returns the JSON text data with every string in it (keys too) redacted as String does,
// and every number whose text holds a sensitive value replaced, whole, by the string Mask. The
// order of keys and the text of other numbers are kept. Text that is not JSON is redacted as a
// string.
func (r *Redactor) JSON(data []byte) []byte {
	if r.Empty() {
		return data
	}
	out, err := r.rewrite(data)
	if err != nil {
		return []byte(r.String(string(data)))
	}
	return out
}

// frame is an open object or array while rewriting JSON; n counts the tokens written in it.
type frame struct {
	object bool
	n      int
}

// rewrite re-encodes data token by token, redacting strings and numbers.
func (r *Redactor) rewrite(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out bytes.Buffer
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			out.WriteByte(byte(d))
			continue
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			switch {
			case top.object && top.n%2 == 1:
				out.WriteByte(':')
			case top.n > 0:
				out.WriteByte(',')
			}
			top.n++
		} else if out.Len() > 0 {
			out.WriteByte('\n')
		}
		switch t := tok.(type) {
		case json.Delim:
			out.WriteByte(byte(t))
			stack = append(stack, frame{object: t == '{'})
		case string:
			writeString(&out, r.String(t))
		case json.Number:
			if r.String(string(t)) != string(t) {
				writeString(&out, Mask)
			} else {
				out.WriteString(string(t))
			}
		case bool:
			out.WriteString(strconv.FormatBool(t))
		case nil:
			out.WriteString("null")
		}
	}
	return out.Bytes(), nil
}

// writeString writes s as a JSON string, without escaping HTML characters.
func writeString(out *bytes.Buffer, s string) {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	out.Truncate(out.Len() - 1) // the newline Encode adds
}

// Leaves returns the text of the values in v, a JSON-like Go value (as encoding/json
// decodes into any): each string, and each number as JSON writes it, found in maps and
// slices at any depth. Booleans and nulls are not values worth hiding.
func Leaves(v any) []string {
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case float64, json.Number, int, int64:
			if b, err := json.Marshal(v); err == nil {
				out = append(out, string(b))
			}
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return out
}

// Merge adds values to set, a sorted list without duplicates, leaving out those shorter than
// MinLength; it returns the new set (set itself when nothing was added).
func Merge(set []string, values ...string) []string {
	for _, v := range values {
		if len(v) < MinLength {
			continue
		}
		if i, found := slices.BinarySearch(set, v); !found {
			set = slices.Insert(slices.Clip(set), i, v)
		}
	}
	return set
}
