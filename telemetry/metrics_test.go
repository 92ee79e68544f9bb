package telemetry_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/telemetry"
)

// scrape reads the metrics from url as Prometheus does, in the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the metrics: %v", err)
	}
	return families
}

// series finds the series of a family whose labels are exactly labels ("name=value" pairs).
func series(families map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	f := families[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(labels))
		if slices.Equal(got, want) {
			return m
		}
	}
	return nil
}

// labelSets lists the label sets of a family, for messages.
func labelSets(families map[string]*dto.MetricFamily, name string) string {
	var sets []string
	for _, m := range families[name].GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		sets = append(sets, "{"+strings.Join(ls, ",")+"}")
	}
	return strings.Join(sets, " ")
}

// value is a counter's or a gauge's value, or a histogram's count; -1 when the series is missing.
func value(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := series(families, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func wantValue(t *testing.T, families map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	if got := value(families, name, labels...); got != want {
		t.Errorf("%s%v = %v, want %v; the series: %s", name, labels, got, want, labelSets(families, name))
	}
}

// TestMetricsOfARealEngine drives runs that succeed, fail (a step's #Fail, a provider error
// retried then failing, a template that does not exist) and suspend through a real engine, and
// reads the metrics over HTTP from a promhttp handler, as Prometheus would.
func TestMetricsOfARealEngine(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := telemetry.NewMetrics(reg)
	metricsSrv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer metricsSrv.Close()
	e := newEnv(t, engine.Options{Observer: m, QueueObserver: m}, m.Store, m.ObserveEvaluation)
	// Nothing listens here: a request is a connection refused, a provider error.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	ctx := context.Background()
	wf := &v1alpha1.Workflow{}
	wf.Namespace, wf.Name = "default", "greet"
	wf.Steps = []v1alpha1.WorkflowStep{{WorkflowStepBase: v1alpha1.WorkflowStepBase{Name: "say", Type: "print-message-in-status"}}}
	wf.Steps[0].Properties = raw(`{"message":"hello"}`)
	if err := e.store.PutObjects(ctx, nil, []*v1alpha1.Workflow{wf}); err != nil {
		t.Fatal(err)
	}

	keys := []engine.Key{
		e.start(t, "ok", "", fmt.Sprintf(`{"steps":[
			{"name":"say","type":"print-message-in-status","properties":{"message":"hi"}},
			{"name":"call","type":"request","properties":{"url":%q}}]}`, e.server.URL+"/ok")),
		e.start(t, "fails", "", fmt.Sprintf(`{"steps":[{"name":"call","type":"request","properties":{"url":%q}}]}`, e.server.URL+"/fail")),
		e.start(t, "errors", "", fmt.Sprintf(`{"steps":[{"name":"call","type":"request","properties":{"url":%q}}]}`, closed.URL)),
		e.start(t, "templated", "greet", ""),
		e.start(t, "no-template", "nothing-by-this-name", ""),
	}
	for _, k := range keys {
		e.watch.finished(t, k)
	}

	// A suspended step waits; resumed, it is done and waits no more.
	held := 300 * time.Millisecond
	approval := e.start(t, "approval", "", `{"steps":[{"name":"approve","type":"suspend"}]}`)
	e.watch.waitFor(t, approval, "suspended", func(r *engine.Run) bool { return r.Object.Status.Phase == v1alpha1.RunSuspending })
	e.idle(t, approval)
	got := scrape(t, metricsSrv.URL)
	wantValue(t, got, 1, "stepflow_steps_waiting")
	time.Sleep(held)
	if _, err := e.eng.Operate(ctx, approval, engine.Operation{Kind: engine.OpResume}); err != nil {
		t.Fatal(err)
	}
	e.watch.finished(t, approval)
	keys = append(keys, approval)
	e.idle(t, keys...)

	got = scrape(t, metricsSrv.URL)
	wantValue(t, got, 0, "stepflow_steps_waiting")
	wantValue(t, got, 4, "stepflow_runs_started_total", "template=")
	wantValue(t, got, 1, "stepflow_runs_started_total", "template=greet")
	wantValue(t, got, 1, "stepflow_runs_started_total", "template=nothing-by-this-name")
	wantValue(t, got, 2, "stepflow_runs_finished_total", "template=", "phase=succeeded")
	wantValue(t, got, 2, "stepflow_runs_finished_total", "template=", "phase=failed")
	wantValue(t, got, 1, "stepflow_runs_finished_total", "template=greet", "phase=succeeded")
	wantValue(t, got, 1, "stepflow_runs_finished_total", "template=nothing-by-this-name", "phase=failed")
	if n := len(got["stepflow_runs_finished_total"].GetMetric()); n != 4 {
		t.Errorf("stepflow_runs_finished_total has %d series, want 4: %s", n, labelSets(got, "stepflow_runs_finished_total"))
	}

	// Step durations, by type and phase: one observation per step that finished.
	wantValue(t, got, 2, "stepflow_step_duration_seconds", "type=print-message-in-status", "phase=succeeded")
	wantValue(t, got, 1, "stepflow_step_duration_seconds", "type=request", "phase=succeeded")
	wantValue(t, got, 2, "stepflow_step_duration_seconds", "type=request", "phase=failed")
	wantValue(t, got, 1, "stepflow_step_duration_seconds", "type=suspend", "phase=succeeded")
	if s := series(got, "stepflow_step_duration_seconds", "type=suspend", "phase=succeeded"); s != nil && s.Histogram.GetSampleSum() < held.Seconds() {
		t.Errorf("the suspend step lasted %vs, want at least the %v it was held", s.Histogram.GetSampleSum(), held)
	}

	// One provider error per try of the request that could not connect: the first and the
	// one retry the policy allows. A status 500 is a result, failed by the definition.
	wantValue(t, got, 2, "stepflow_provider_errors_total", "action=http.do")
	if n := len(got["stepflow_provider_errors_total"].GetMetric()); n != 1 {
		t.Errorf("stepflow_provider_errors_total has %d series, want 1: %s", n, labelSets(got, "stepflow_provider_errors_total"))
	}

	// CUE evaluations: ok 1, fails 1, errors 2 (a try and a retry) of request; the resumed
	// suspend is released without evaluating its template, so it counts once.
	wantValue(t, got, 4, "stepflow_cue_evaluation_seconds", "type=request")
	wantValue(t, got, 2, "stepflow_cue_evaluation_seconds", "type=print-message-in-status")
	wantValue(t, got, 1, "stepflow_cue_evaluation_seconds", "type=suspend")

	// Every run was queued and taken: once to start, once more for each result of a request
	// step (the errors run's try and its retry); the other steps are quick, made in the take
	// that started them (and the resume is an operation, not a take). Nothing waits now.
	const takes = 2 + // ok: its start (print-message-in-status made in it) and the request's result
		2 + 3 + // fails, errors
		1 + 1 + 1 // templated, no-template, approval
	if n := value(got, "stepflow_queue_wait_seconds"); n < takes {
		t.Errorf("stepflow_queue_wait_seconds counts %v waits, want at least %d", n, takes)
	}
	wantValue(t, got, 0, "stepflow_queue_depth")
}
