package step

import "testing"

func TestSignificant(t *testing.T) {
	for s, want := range map[string]int{"2.0": 2, "0.95": 2, "0.000123": 3, "-1.50e10": 3, "123456789012345.6": 16, "1E+3": 1, "0.0": 0} {
		if got := significant(s); got != want {
			t.Errorf("significant(%s) = %d, want %d", s, got, want)
		}
	}
}

func TestNumberForms(t *testing.T) {
	for b, want := range map[string]struct {
		fraction bool
		digits   int
	}{
		`{"a": 1, "b": [22, -333], "t": true, "f": false}`:  {false, 3},
		`{"a": "1.5e3 and 1234567890123456", "b": "\"2.0"}`: {false, 0},
		`{"a": 1, "b": 2.5}`:      {true, 1},
		`{"a": 10e3}`:             {true, 2},
		`{"a": 1234567890123456}`: {false, 16},
	} {
		if fraction, digits := numberForms([]byte(b)); fraction != want.fraction || digits != want.digits {
			t.Errorf("numberForms(%s) = %t, %d, want %t, %d", b, fraction, digits, want.fraction, want.digits)
		}
	}
}
