// values.go: the values that go into CUE and come out of it. A step's properties are read once
// from their JSON into the Go values CUE takes them as (readProperties) and filled with the
// context (definition.fill); an action's parameters come out as JSON once (site.readParams in
// walk.go), which Call.Decode reads into a provider's struct.

package step

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/token"
)

// readProperties reads a step's properties, a JSON object, into the Go values CUE takes them as
// when it reads JSON: a number is an int when written without a fraction or an exponent and a
// float otherwise (3.0 is a float), with the digits written. Nothing, or null, is an empty
// object.
func readProperties(raw json.RawMessage) (map[string]any, error) {
	props := map[string]any{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return props, nil
	}
	if fraction, digits := numberForms(raw); !fraction && digits <= 15 {
		// Every number is an integer that a float64 holds exactly: the most common properties
		// are read the quickest way, their float64s made ints below.
		if err := json.Unmarshal(raw, &props); err != nil {
			return nil, err
		}
	} else {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber() // numbers kept as written
		if err := d.Decode(&props); err != nil || len(bytes.TrimSpace(raw[d.InputOffset():])) > 0 {
			if err := json.Unmarshal(raw, new(map[string]any)); err != nil {
				return nil, err // encoding/json's word for what is wrong, as on the other path
			}
			return nil, errors.New("invalid JSON")
		}
	}
	if props == nil {
		return map[string]any{}, nil
	}
	numbers(props)
	return props, nil
}

// numbers replaces, in place, each number in x by the number CUE reads.
func numbers(x any) {
	switch x := x.(type) {
	case map[string]any:
		for k, v := range x {
			if n, ok := number(v); ok {
				x[k] = n
			} else {
				numbers(v)
			}
		}
	case []any:
		for i, v := range x {
			if n, ok := number(v); ok {
				x[i] = n
			} else {
				numbers(v)
			}
		}
	}
}

// number is x, a number as readProperties decodes it, as CUE reads it; false when x is not a
// number. A float64, which readProperties has only for a whole number, and most integers are
// an int64; a float with at most 15 significant digits, which a float64 holds exactly, is a
// float64 (CUE's float); another number is its literal, which CUE compiles with all its digits.
func number(x any) (any, bool) {
	switch x := x.(type) {
	case float64:
		return int64(x), true
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i, true
			}
			return &ast.BasicLit{Kind: token.INT, Value: s}, true
		}
		if significant(s) <= 15 {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				return f, true
			}
		}
		return &ast.BasicLit{Kind: token.FLOAT, Value: s}, true
	}
	return nil, false
}

// significant counts the significant digits of a JSON number: those of its mantissa past its
// leading zeros.
func significant(s string) int {
	n, lead := 0, true
	for i := 0; i < len(s) && s[i] != 'e' && s[i] != 'E'; i++ {
		switch c := s[i]; {
		case c == '0' && lead:
		case c >= '0' && c <= '9':
			n, lead = n+1, false
		}
	}
	return n
}

// fill returns the template with its parameter, props as readProperties gives them, and, when
// it refers to it, its context filled in: one fill, as each fill evaluates the whole template
// again.
func (d *definition) fill(props, context map[string]any) cue.Value {
	var in any = map[string]any{"parameter": props}
	for i := len(d.root.Selectors()) - 1; i >= 0; i-- {
		in = map[string]any{d.root.Selectors()[i].Unquoted(): in}
	}
	if d.usesContext {
		in.(map[string]any)["context"] = plain(context)
	}
	return d.file.FillPath(cue.Path{}, in)
}

// plain turns a JSON-like Go value into one that CUE reads as JSON would be: encoding/json
// decodes every number as float64, which CUE would take as a float and not unify with int. It
// is for the values the engine gives as Go values (the context, a condition's scope) and for
// CheckProperties' properties.
func plain(x any) any {
	switch x := x.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			out[k] = plain(v)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = plain(v)
		}
		return out
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	}
	return x
}

// appendKey appends s to b as a JSON string: as it is when it is ASCII with nothing to escape,
// through encoding/json otherwise.
func appendKey(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// numberForms scans the JSON b for how its numbers are written: fraction reports one with a
// fraction or an exponent (and ends the scan), digits is the most digits one has.
func numberForms(b []byte) (fraction bool, digits int) {
	run := 0 // the digits of the number being read
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"': // a string: skip it
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			run = 0
		case c >= '0' && c <= '9':
			run++
			digits = max(digits, run)
		case run > 0 && (c == '.' || c == 'e' || c == 'E'):
			return true, digits
		default:
			run = 0
		}
	}
	return false, digits
}
