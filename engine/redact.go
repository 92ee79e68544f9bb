package engine

import (
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/redact"
)

// Redactor returns what hides the run's sensitive values; it redacts nothing when the run has
// none. Everything that shows a run (the API, the CLI) passes it through this.
func (r *Run) Redactor() *redact.Redactor {
	if len(r.Sensitive) == 0 {
		return nil
	}
	return redact.New(r.Sensitive...)
}

// learn adds values to the run's sensitive values.
func (r *Run) learn(values ...string) {
	r.Sensitive = redact.Merge(r.Sensitive, values...)
}

// redactForSave hides the run's sensitive values in what a save writes for people to read:
// the messages and reasons of the status (the run's, the steps', the iterations' in the status
// and in Loops) and the log lines. The whole status is redacted at every save, so that a value
// learned late is also hidden in messages written before it was known.
func redactForSave(run *Run, logs []LogEntry) {
	rd := run.Redactor()
	if rd.Empty() {
		return
	}
	st := &run.Object.Status
	st.Message = rd.String(st.Message)
	step := func(s *v1alpha1.StepStatus) {
		s.Message, s.Reason = rd.String(s.Message), rd.String(s.Reason)
		if s.Iterations == nil {
			return
		}
		for i := range s.Iterations.Entries {
			e := &s.Iterations.Entries[i]
			e.Message, e.Reason = rd.String(e.Message), rd.String(e.Reason)
			for j := range e.SubSteps {
				e.SubSteps[j].Message, e.SubSteps[j].Reason = rd.String(e.SubSteps[j].Message), rd.String(e.SubSteps[j].Reason)
			}
		}
	}
	for i := range st.Steps {
		step(&st.Steps[i].StepStatus)
		for j := range st.Steps[i].SubStepsStatus {
			step(&st.Steps[i].SubStepsStatus[j])
		}
	}
	for _, l := range run.Loops {
		for _, it := range l.Iterations {
			step(&it.Status)
			for j := range it.SubSteps {
				step(&it.SubSteps[j])
			}
		}
	}
	for i := range logs {
		RedactLog(rd, &logs[i])
	}
}

// RedactLog hides sensitive values in a log entry's text and data.
func RedactLog(rd *redact.Redactor, l *LogEntry) {
	if rd.Empty() {
		return
	}
	l.Message, l.Outcome, l.Action = rd.String(l.Message), rd.String(l.Outcome), rd.String(l.Action)
	if len(l.Data) > 0 {
		l.Data = rd.JSON(l.Data)
	}
}
