package bench

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stepflow/stepflow/server/servertest"
)

// BenchmarkServerWaitRoundTrip is issue 5's figure: POST /api/v1/runs?wait for a one-step run,
// over real HTTP (one keep-alive connection), on the embedded SQLite store with every
// transition durable. It reports the round trip's p50 and p99.
//
//	go test -run '^$' -bench ServerWait -benchtime 2000x ./bench/
func BenchmarkServerWaitRoundTrip(b *testing.B) {
	srv := servertest.Start(b, servertest.Options{})
	token := srv.Token(b, "operator")
	body := []byte(`{"apiVersion": "core.oam.dev/v1alpha1", "kind": "WorkflowRun",
		"metadata": {"generateName": "bench-"},
		"spec": {"workflowSpec": {"steps": [{"name": "only", "type": "print-message-in-status", "properties": {"message": "hi"}}]}}}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	call := func() time.Duration {
		req, _ := http.NewRequestWithContext(b.Context(), http.MethodPost, srv.URL+"/api/v1/runs?wait=10s", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"status":"succeeded"`)) {
			b.Fatalf("answer %d: %s", resp.StatusCode, out)
		}
		return took
	}
	for range 50 { // warm the CUE compile cache and the connection
		call()
	}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		times = append(times, call())
	}
	b.StopTimer()
	slices.Sort(times)
	n := len(times)
	b.ReportMetric(float64(times[n/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[n*99/100].Microseconds())/1000, "p99-ms")
}
