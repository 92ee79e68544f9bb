package egress_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/engine"
)

func TestParseRefusesNonsense(t *testing.T) {
	for _, bad := range [][2][]string{{{"10.0.0.0/33"}, nil}, {nil, {""}}, {nil, {"1.2.3.4/x"}}} {
		if _, err := egress.New(bad[0], bad[1]); err == nil {
			t.Errorf("New(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if p, err := egress.New(nil, nil); p != nil || err != nil {
		t.Errorf("empty lists: %v, %v; want no policy", p, err)
	}
}

// A real local server is reached or refused by what the lists say, by address, CIDR or name
// (localhost resolves to the loopback address the CIDR names).
func TestPolicyDecidesRealConnections(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	defer hs.Close()
	port := hs.URL[strings.LastIndex(hs.URL, ":")+1:]
	cases := []struct {
		name        string
		allow, deny []string
		host        string
		denied      string // "" reaches the server; else a fragment of the error
	}{
		{name: "no allow entry matches", allow: []string{"10.0.0.0/8"}, host: "127.0.0.1", denied: "not in the egress allow list"},
		{name: "allowed by CIDR", allow: []string{"127.0.0.0/8"}, host: "127.0.0.1"},
		{name: "deny wins", allow: []string{"127.0.0.0/8"}, deny: []string{"127.0.0.1"}, host: "127.0.0.1", denied: `deny entry "127.0.0.1"`},
		{name: "a name resolved, its address denied", deny: []string{"127.0.0.0/8"}, host: "localhost", denied: "localhost (127.0.0.1)"},
		{name: "a name denied", deny: []string{"localhost"}, host: "localhost", denied: `deny entry "localhost"`},
		{name: "a name allowed", allow: []string{"localhost"}, host: "localhost"},
		{name: "a wildcard does not match its apex", allow: []string{"*.localhost"}, host: "localhost", denied: "allow list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := egress.New(c.allow, c.deny)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+c.host+":"+port+"/", nil)
			resp, err := p.Client().Do(req)
			if c.denied == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "ok" {
					t.Errorf("body %q", b)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatal("reached a denied destination")
			}
			if !strings.Contains(err.Error(), c.denied) {
				t.Errorf("error %q, want it to say %q", err, c.denied)
			}
			if _, ok := errors.AsType[*engine.TerminalError](err); !ok {
				t.Errorf("a refusal is not terminal: %v", err)
			}
		})
	}
}
