package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// AnnotationTemplateVersion records, on a run made from a template, the template's version
// (its metadata.generation) when the run was created.
const AnnotationTemplateVersion = "stepflow.dev/template-version"

// runView is a run as the API returns it: the WorkflowRun, and what the engine keeps beside it.
type runView struct {
	*v1alpha1.WorkflowRun
	Stepflow runExtra `json:"stepflow"`
}

// runExtra is the part of a run that is not in the WorkflowRun.
type runExtra struct {
	Version int64 `json:"version"`
	// Settled says the run will not move without an operation: it has finished, or waits for
	// a resume.
	Settled         bool                       `json:"settled"`
	Template        string                     `json:"template,omitempty"`
	TemplateVersion int64                      `json:"templateVersion,omitempty"`
	Steps           []v1alpha1.WorkflowStep    `json:"steps,omitempty"`
	Outputs         map[string]json.RawMessage `json:"outputs,omitempty"`
	// ExpiresAt is when the finished run is deleted with its log (engine.Retention); absent
	// while it runs, and when it is kept for ever.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

func newRunView(run *engine.Run, retention engine.Retention) runView {
	obj := run.Object.DeepCopy()
	obj.APIVersion = v1alpha1.GroupVersion.String()
	obj.Kind = v1alpha1.KindWorkflowRun
	v := runView{WorkflowRun: obj, Stepflow: runExtra{Version: run.Version, Settled: engine.Settled(run), Template: obj.Spec.WorkflowRef, Outputs: run.Vars}}
	if at := retention.ExpiresAt(run); !at.IsZero() {
		at = at.UTC()
		v.Stepflow.ExpiresAt = &at
	}
	if run.Spec != nil {
		v.Stepflow.Steps = run.Spec.Steps
	}
	if tv, err := strconv.ParseInt(obj.Annotations[AnnotationTemplateVersion], 10, 64); err == nil {
		v.Stepflow.TemplateVersion = tv
	}
	return v
}

// writeRun answers with the run as the API shows it (runView), its sensitive values redacted.
func (s *Server) writeRun(w http.ResponseWriter, status int, run *engine.Run) error {
	return writeOfRun(w, status, run, newRunView(run, s.hub.retention))
}

// writeOfRun answers with v, something shown of run (the run, its log, its iterations), as
// JSON with the run's sensitive values redacted.
func writeOfRun(w http.ResponseWriter, status int, run *engine.Run, v any) error {
	data, err := ofRun(run, v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
	return nil
}

// ofRun encodes v, something shown of run, as JSON with the run's sensitive values redacted:
// every answer, event and waiting request about a run goes through it. The status and the log
// were saved redacted already; this also hides them in the outputs, the context, the
// iterations' outputs, and log lines saved before a value was known to be sensitive.
func ofRun(run *engine.Run, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return run.Redactor().JSON(data), nil
}

// summaryView is a run in a list.
type summaryView struct {
	Namespace string                    `json:"namespace"`
	Name      string                    `json:"name"`
	Phase     v1alpha1.WorkflowRunPhase `json:"phase"`
	Message   string                    `json:"message,omitempty"`
	Template  string                    `json:"template,omitempty"`
	StartTime *time.Time                `json:"startTime,omitempty"`
	EndTime   *time.Time                `json:"endTime,omitempty"`
	Steps     stepCounts                `json:"steps"`
	Version   int64                     `json:"version"`
}

type stepCounts struct {
	Total      int `json:"total"`
	Pending    int `json:"pending"`
	Running    int `json:"running"`
	Suspending int `json:"suspending"`
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`
	Skipped    int `json:"skipped"`
}

func newSummaryView(r store.RunSummary) summaryView {
	v := summaryView{
		Namespace: r.Namespace, Name: r.Name, Phase: r.Phase, Message: r.Message, Template: r.Template, Version: r.Version,
		Steps: stepCounts(r.Steps),
	}
	if !r.StartTime.IsZero() {
		t := r.StartTime.UTC()
		v.StartTime = &t
	}
	if !r.EndTime.IsZero() {
		t := r.EndTime.UTC()
		v.EndTime = &t
	}
	return v
}
