package egress_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/egress"
	"github.com/stepflow/stepflow/engine"
)

func TestParseRefusesNonsense(t *testing.T) {
	for _, bad := range [][2][]string{{{"10.0.0.0/33"}, nil}, {nil, {""}}, {nil, {"1.2.3.4/x"}}} {
		if _, err := egress.New(egress.Options{Allow: bad[0], Deny: bad[1]}); err == nil {
			t.Errorf("New(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if p, err := egress.New(egress.Options{}); p != nil || err != nil {
		t.Errorf("empty lists: %v, %v; want no policy", p, err)
	}
	if p, err := egress.New(egress.Options{DenyLinkLocal: true}); p == nil || err != nil {
		t.Errorf("link-local denied: %v, %v; want a policy", p, err)
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
			p, err := egress.New(egress.Options{Allow: c.allow, Deny: c.deny})
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

// 0.0.0.0 and :: reach the local host: with the loopback network denied, they are refused as
// its addresses are (before, 0.0.0.0 reached a service on 127.0.0.1 past a 127.0.0.0/8 deny).
func TestUnspecifiedAddressesAreLoopback(t *testing.T) {
	cases := []struct{ listen, host, deny string }{
		{"127.0.0.1:0", "0.0.0.0", "127.0.0.0/8"},
		{"[::1]:0", "[::]", "::1"},
	}
	for _, c := range cases {
		t.Run(c.host, func(t *testing.T) {
			var lc net.ListenConfig
			ln, err := lc.Listen(t.Context(), "tcp", c.listen)
			if err != nil {
				t.Skipf("no %s here: %v", c.listen, err)
			}
			hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
			hs.Listener = ln
			hs.Start()
			defer hs.Close()
			port := hs.URL[strings.LastIndex(hs.URL, ":")+1:]
			url := "http://" + c.host + ":" + port + "/"
			// The address does reach the service: the policy is what stops it.
			if resp, err := get(t, http.DefaultClient, url); err != nil {
				t.Skipf("%s does not reach the local host here: %v", url, err)
			} else {
				resp.Body.Close()
			}
			p, err := egress.New(egress.Options{Deny: []string{c.deny}})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := get(t, p.Client(), url)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("%s reached the service past the deny entry %s", url, c.deny)
			}
			if !strings.Contains(err.Error(), "denied by the egress deny entry") || !strings.Contains(err.Error(), "loopback") {
				t.Errorf("error %q", err)
			}
			// Allowed as loopback, it goes through.
			allowed, err := egress.New(egress.Options{Allow: []string{c.deny}})
			if err != nil {
				t.Fatal(err)
			}
			resp, err = get(t, allowed.Client(), url)
			if err != nil {
				t.Fatalf("allowed as loopback, refused: %v", err)
			}
			resp.Body.Close()
		})
	}
}

// Link-local destinations (cloud instance metadata) are refused when the policy says so,
// before any connection, with the flag that allows them; the lists do not let them through.
func TestLinkLocalIsDeniedWhenAsked(t *testing.T) {
	deny, err := egress.New(egress.Options{DenyLinkLocal: true, Allow: []string{"169.254.0.0/16"}})
	if err != nil {
		t.Fatal(err)
	}
	allow, err := egress.New(egress.Options{Deny: []string{"10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	// A cancelled context: a dial the policy lets through fails at once, reaching nothing.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, addr := range []string{"169.254.169.254:80", "[fe80::1]:80", "[fe80::a9fe:a9fe%lo]:80"} {
		_, err := deny.DialContext(ctx, "tcp", addr)
		if de, ok := errors.AsType[*egress.DeniedError](err); !ok || !de.LinkLocal || !strings.Contains(err.Error(), "--egress-allow-link-local") {
			t.Errorf("%s with link-local denied: %v", addr, err)
		}
		if _, ok := errors.AsType[*engine.TerminalError](err); !ok {
			t.Errorf("%s: a refusal is not terminal: %v", addr, err)
		}
		_, err = allow.DialContext(ctx, "tcp", addr)
		if _, ok := errors.AsType[*egress.DeniedError](err); ok || !errors.Is(err, context.Canceled) {
			t.Errorf("%s with link-local allowed: %v, want only the cancelled dial", addr, err)
		}
	}
}

// get GETs url with client.
func get(t *testing.T, client *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return client.Do(req)
}
