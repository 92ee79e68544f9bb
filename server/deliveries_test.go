package server_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server/servertest"
)

// The same signed delivery sent three times starts one run, and each repeat is answered as the
// first was, naming that run: by GitHub's X-GitHub-Delivery, by X-Stepflow-Delivery, or by a
// signed X-Stepflow-Timestamp, which is refused outside five minutes. Before, each repeat
// started a run of its own. The deliveries are forgotten after a day.
func TestWebhookRepeatsStartNothing(t *testing.T) {
	clock := engine.NewFakeClock(time.Now())
	srv, op, admin := start(t, servertest.Options{Clock: clock})
	admin.postYAML("/api/v1/templates", deployTemplate).want(t, http.StatusCreated)
	tr := admin.postJSON("/api/v1/templates/default/deploy/triggers", map[string]any{"type": "webhook"}).want(t, http.StatusCreated).json(t)
	_, rest, _ := strings.Cut(at(tr, "url").(string), "/api/")
	url, secret := srv.URL+"/api/"+rest, at(tr, "secret").(string)
	sign := func(parts ...string) string {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(strings.Join(parts, ".")))
		return "sha256=" + hex.EncodeToString(mac.Sum(nil))
	}
	send := func(query, body string, headers ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+query, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	thrice := func(what string, want int, query, body string, headers ...string) string {
		t.Helper()
		status, first := send(query, body, headers...)
		if status != want {
			t.Fatalf("%s: %d %s, want %d", what, status, first, want)
		}
		for range 2 {
			if s, again := send(query, body, headers...); s != status || again != first {
				t.Errorf("%s repeated: %d %s, want %d %s as the first", what, s, again, status, first)
			}
		}
		return first
	}
	runs := func() float64 { return at(op.get("/api/v1/runs").json(t), "total").(float64) }
	body := `{"image": "app:7"}`

	github := []string{"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "X-Hub-Signature-256", sign(body)}
	answer := thrice("a GitHub delivery", http.StatusAccepted, "", body, github...)
	if n := runs(); n != 1 {
		t.Errorf("a GitHub delivery sent three times started %v runs", n)
	}
	if !strings.Contains(answer, `"name":"deploy-`) {
		t.Errorf("answer %s", answer)
	}

	ts := strconv.FormatInt(clock.Now().Unix(), 10)
	thrice("a signed timestamp", http.StatusAccepted, "", body, "X-Stepflow-Timestamp", ts, "X-Stepflow-Signature", sign(ts, body))
	if n := runs(); n != 2 {
		t.Errorf("a timestamped delivery sent three times: %v runs in all, want 2", n)
	}
	late := strconv.FormatInt(clock.Now().Add(-6*time.Minute).Unix(), 10)
	if s, b := send("", body, "X-Stepflow-Timestamp", late, "X-Stepflow-Signature", sign(late, body)); s != http.StatusUnauthorized || !strings.Contains(b, "5m0s") {
		t.Errorf("a timestamp six minutes old: %d %s", s, b)
	}
	if s, _ := send("", body, "X-Stepflow-Timestamp", ts, "X-Stepflow-Signature", sign(body)); s != http.StatusUnauthorized {
		t.Errorf("a timestamp the signature does not cover: %d", s)
	}

	// A delivery answered 400 is answered 400 again, whatever its repeats carry.
	delivery := []string{"X-Stepflow-Delivery", "order-1"}
	thrice("a delivery with bad parameters", http.StatusBadRequest, "?token="+secret, `{"image": 3}`, delivery...)
	if s, _ := send("?token="+secret, body, delivery...); s != http.StatusBadRequest {
		t.Errorf("a repeat of a refused delivery: %d", s)
	}
	if n := runs(); n != 2 {
		t.Errorf("%v runs in all, want 2", n)
	}

	// A day later the deliveries are forgotten (the server deletes them): the GitHub one
	// starts a run again.
	clock.Advance(25 * time.Hour)
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs, err := srv.Store.Records(t.Context(), "delivery", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries kept a day later", len(recs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s, _ := send("", body, github...); s != http.StatusAccepted {
		t.Errorf("the GitHub delivery a day later: %d", s)
	}
	if n := runs(); n != 3 {
		t.Errorf("%v runs in all, want 3", n)
	}
}
