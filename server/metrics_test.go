package server_test

import (
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stepflow/stepflow/server/servertest"
)

// /metrics is scraped as Prometheus does and parsed: the runs, steps and requests are counted.
func TestMetricsAreScraped(t *testing.T) {
	srv, op, _ := start(t, servertest.Options{})
	op.postYAML("/api/v1/runs?wait=30s", approvalRun).want(t, http.StatusOK)
	op.postJSON("/api/v1/runs/default/gated/resume", nil).want(t, http.StatusOK)
	waitPhase(t, op, "default/gated", "succeeded")
	op.get("/api/v1/runs/default/missing").want(t, http.StatusNotFound)

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := families[name]
		if f == nil {
			t.Fatalf("no %s in /metrics", name)
		}
	next:
		for _, m := range f.Metric {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		return 0
	}
	if v := value("stepflow_runs_finished_total", map[string]string{"phase": "succeeded"}); v != 1 {
		t.Errorf("runs finished succeeded = %v", v)
	}
	if v := value("stepflow_runs_started_total", nil); v != 1 {
		t.Errorf("runs started = %v", v)
	}
	if v := value("stepflow_step_duration_seconds", map[string]string{"type": "suspend", "phase": "succeeded"}); v != 1 {
		t.Errorf("suspend step durations observed = %v", v)
	}
	if v := value("stepflow_cue_evaluation_seconds", map[string]string{"type": "print-message-in-status"}); v < 2 {
		t.Errorf("CUE evaluations of print-message-in-status = %v", v)
	}
	if v := value("stepflow_http_requests_total", map[string]string{"route": "GET /api/v1/runs/{namespace}/{name}", "code": "404"}); v != 1 {
		t.Errorf("404s of GET run = %v", v)
	}
	if value("stepflow_queue_wait_seconds", nil) == 0 {
		t.Error("no queue wait observed")
	}
	if families["go_goroutines"] == nil || !strings.Contains(resp.Header.Get("Content-Type"), "text/plain") {
		t.Error("no Go collector, or not the text format")
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.Label {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
