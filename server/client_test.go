package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// caller calls the API over HTTP with a token.
type caller struct {
	t     *testing.T
	base  string
	token string
}

// reply is an answer: its status, headers and body.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v\n%s", r.status, err, r.body)
	}
	return m
}

// problems are the field paths of a 400's problems, with their messages.
func (r reply) problems(t *testing.T) map[string]string {
	t.Helper()
	var e struct {
		Error struct {
			Problems []struct {
				Field, Message string
				Line           int
			}
		}
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("not an error: %s", r.body)
	}
	out := map[string]string{}
	for _, p := range e.Error.Problems {
		out[p.Field] = p.Message
	}
	return out
}

func (c caller) do(method, path, contentType string, body []byte) reply {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c caller) get(path string) reply { return c.do("GET", path, "", nil) }

func (c caller) postJSON(path string, v any) reply {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.do("POST", path, "application/json", b)
}

func (c caller) postYAML(path, doc string) reply {
	return c.do("POST", path, "application/yaml", []byte(strings.TrimLeft(doc, "\n")))
}

// want fails the test unless the reply has the status.
func (r reply) want(t *testing.T, status int) reply {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// at digs a value out of decoded JSON by a dotted path of keys and indexes.
func at(v any, path string) any {
	for k := range strings.SplitSeq(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i := 0
			for _, ch := range k {
				i = i*10 + int(ch-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// events opens a run's event stream and returns a function that reads events until one
// satisfies ok, failing the test when none does within 20 seconds.
func (c caller) events(path string) (next func(what string, ok func(name, data string) bool)) {
	c.t.Helper()
	req, _ := http.NewRequestWithContext(c.t.Context(), http.MethodGet, c.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		c.t.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	events := make(chan [2]string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, "event: "); ok {
				name = n
			} else if d, ok := strings.CutPrefix(line, "data: "); ok {
				events <- [2]string{name, d}
			}
		}
		close(events)
	}()
	t := c.t
	return func(what string, ok func(name, data string) bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case ev, open := <-events:
				if !open {
					t.Fatalf("stream ended waiting for %s", what)
				}
				if ok(ev[0], ev[1]) {
					return
				}
			case <-deadline:
				t.Fatalf("no event: %s", what)
			}
		}
	}
}
