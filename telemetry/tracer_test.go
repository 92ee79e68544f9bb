package telemetry_test

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/telemetry"
)

// receiver is an OTLP/HTTP trace receiver: it decodes the protobuf export requests posted to
// path and keeps their spans, with the service.name of their resource.
type receiver struct {
	mu       sync.Mutex
	path     string
	spans    []*tracepb.Span
	services []string
	errs     []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(format string, args ...any) {
		rc.mu.Lock()
		rc.errs = append(rc.errs, fmt.Sprintf(format, args...))
		rc.mu.Unlock()
		http.Error(w, fmt.Sprintf(format, args...), http.StatusBadRequest)
	}
	if r.Method != http.MethodPost || r.URL.Path != rc.path {
		fail("%s %s, want POST %s", r.Method, r.URL.Path, rc.path)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		fail("Content-Type %q", ct)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			fail("gzip: %v", err)
			return
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil {
		fail("reading: %v", err)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		fail("decoding: %v", err)
		return
	}
	rc.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				rc.services = append(rc.services, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			rc.spans = append(rc.spans, ss.GetSpans()...)
		}
	}
	rc.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

func nanos(t metav1.Time) uint64 { return uint64(t.UnixNano()) }

// TestTracesOfARealRun runs a run with a step that succeeds, a step group and a step that
// fails through a real engine, exports its trace over OTLP/HTTP to a real receiver, and checks
// the spans: one per run and per step, in the status's tree, with the status's times.
func TestTracesOfARealRun(t *testing.T) {
	rc := &receiver{path: "/v1/traces"}
	collector := httptest.NewServer(rc)
	defer collector.Close()
	ctx := context.Background()
	// host:port, plain HTTP: the default path.
	tp, err := telemetry.OTLP(ctx, strings.TrimPrefix(collector.URL, "http://"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tp.Shutdown(ctx) }()
	e := newEnv(t, engine.Options{Observer: telemetry.NewTracer(tp)}, nil, nil)

	key := e.start(t, "traced", "", fmt.Sprintf(`{"steps":[
		{"name":"hello","type":"print-message-in-status","properties":{"message":"hi"}},
		{"name":"grp","type":"step-group","subSteps":[{"name":"inner","type":"print-message-in-status","properties":{"message":"in"}}]},
		{"name":"broken","type":"request","properties":{"url":%q}}]}`, e.server.URL+"/fail"))
	run := e.watch.finished(t, key)
	e.idle(t, key)
	if err := tp.Shutdown(ctx); err != nil { // sends what the batch holds
		t.Fatal(err)
	}
	st := &run.Object.Status
	if st.Phase != v1alpha1.RunFailed || len(st.Steps) != 3 {
		t.Fatalf("the run ended %s with %d steps, want failed with 3", st.Phase, len(st.Steps))
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.errs) > 0 {
		t.Fatalf("the receiver refused exports: %v", rc.errs)
	}
	for _, s := range rc.services {
		if s != telemetry.ServiceName {
			t.Errorf("service.name %q, want %q", s, telemetry.ServiceName)
		}
	}
	if len(rc.services) == 0 {
		t.Error("no resource with a service.name")
	}
	byName := map[string]*tracepb.Span{}
	for _, s := range rc.spans {
		if byName[s.GetName()] != nil {
			t.Errorf("two spans named %q", s.GetName())
		}
		byName[s.GetName()] = s
	}
	if len(rc.spans) != 5 {
		t.Fatalf("%d spans, want 5 (the run, hello, grp, inner, broken): %v", len(rc.spans), keysOf(byName))
	}

	root := byName["run"]
	if root == nil {
		t.Fatalf("no span named run: %v", keysOf(byName))
	}
	if len(root.GetParentSpanId()) != 0 {
		t.Errorf("the run's span has a parent")
	}
	if root.GetStartTimeUnixNano() != nanos(st.StartTime) || root.GetEndTimeUnixNano() != nanos(st.EndTime) {
		t.Errorf("the run's span is %d–%d, want the status's %v–%v", root.GetStartTimeUnixNano(), root.GetEndTimeUnixNano(), st.StartTime, st.EndTime)
	}
	wantAttrs := map[string]string{
		"stepflow.run.namespace": "default", "stepflow.run.name": "traced",
		"stepflow.run.phase": "failed", "stepflow.run.message": st.Message,
	}
	got := attrs(root.GetAttributes())
	for k, v := range wantAttrs {
		if got[k] != v {
			t.Errorf("the run's span: %s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["stepflow.run.template"]; ok {
		t.Errorf("the run's span has a template, but its steps are inline")
	}
	if root.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("the failed run's span has status %v, want an error", root.GetStatus().GetCode())
	}

	check := func(s v1alpha1.StepStatus, parent *tracepb.Span) {
		t.Helper()
		span := byName[s.Name]
		if span == nil {
			t.Errorf("no span for step %s", s.Name)
			return
		}
		if hex.EncodeToString(span.GetTraceId()) != hex.EncodeToString(root.GetTraceId()) {
			t.Errorf("step %s: another trace", s.Name)
		}
		if hex.EncodeToString(span.GetParentSpanId()) != hex.EncodeToString(parent.GetSpanId()) {
			t.Errorf("step %s: parent %x, want %s's %x", s.Name, span.GetParentSpanId(), parent.GetName(), parent.GetSpanId())
		}
		if span.GetStartTimeUnixNano() != nanos(s.FirstExecuteTime) || span.GetEndTimeUnixNano() != nanos(s.LastExecuteTime) {
			t.Errorf("step %s: span %d–%d, want its first and last execution %v–%v", s.Name, span.GetStartTimeUnixNano(), span.GetEndTimeUnixNano(), s.FirstExecuteTime, s.LastExecuteTime)
		}
		got := attrs(span.GetAttributes())
		want := map[string]string{
			"stepflow.step.name": s.Name, "stepflow.step.id": s.ID, "stepflow.step.type": s.Type,
			"stepflow.step.phase": string(s.Phase), "stepflow.step.reason": s.Reason, "stepflow.step.message": s.Message,
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("step %s: %s = %q, want %q", s.Name, k, got[k], v)
			}
		}
		wantCode := tracepb.Status_STATUS_CODE_UNSET
		if s.Phase == v1alpha1.StepFailed {
			wantCode = tracepb.Status_STATUS_CODE_ERROR
			if span.GetStatus().GetMessage() != s.Message {
				t.Errorf("step %s: status message %q, want %q", s.Name, span.GetStatus().GetMessage(), s.Message)
			}
		}
		if span.GetStatus().GetCode() != wantCode {
			t.Errorf("step %s (%s): status %v, want %v", s.Name, s.Phase, span.GetStatus().GetCode(), wantCode)
		}
	}
	for _, s := range st.Steps {
		check(s.StepStatus, root)
		for _, sub := range s.SubStepsStatus {
			check(sub, byName[s.Name])
		}
	}
	if st.Steps[2].Phase != v1alpha1.StepFailed || st.Steps[2].Message == "" {
		t.Errorf("step broken ended %s %q, want failed with a message", st.Steps[2].Phase, st.Steps[2].Message)
	}
}

// TestOTLPEndpointURL: a URL endpoint's scheme and path are used.
func TestOTLPEndpointURL(t *testing.T) {
	rc := &receiver{path: "/custom/traces"}
	collector := httptest.NewServer(rc)
	defer collector.Close()
	ctx := context.Background()
	tp, err := telemetry.OTLP(ctx, collector.URL+"/custom/traces", false)
	if err != nil {
		t.Fatal(err)
	}
	tr := telemetry.NewTracer(tp)
	obj := &v1alpha1.WorkflowRun{Status: v1alpha1.WorkflowRunStatus{
		Phase: v1alpha1.RunSucceeded, Finished: true,
		StartTime: metav1.NewTime(time.Unix(100, 0)), EndTime: metav1.NewTime(time.Unix(100, 0)),
	}}
	obj.Namespace, obj.Name, obj.Spec.WorkflowRef = "ns", "r", "tpl"
	tr.RunChanged(&engine.Run{Object: obj, Version: 1})
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.errs) > 0 || len(rc.spans) != 1 || rc.spans[0].GetName() != "run tpl" {
		t.Fatalf("received %d spans (errors %v), want the one named \"run tpl\"", len(rc.spans), rc.errs)
	}
	if got := attrs(rc.spans[0].GetAttributes())["stepflow.run.template"]; got != "tpl" {
		t.Errorf("template attribute %q, want tpl", got)
	}
	for _, bad := range []string{"", "ftp://host:1", "http://"} {
		if _, err := telemetry.OTLP(ctx, bad, false); err == nil {
			t.Errorf("OTLP(%q): no error", bad)
		}
	}
}

func keysOf(m map[string]*tracepb.Span) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
