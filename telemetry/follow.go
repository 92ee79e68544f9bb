package telemetry

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// endedKept is how many finished runs a follower remembers in each of its two generations, to
// recognize a report older than the finish that arrives after it: it would otherwise be taken
// for a run seen for the first time.
const endedKept = 4096

// follower keeps, for each run in flight, the newest version reported and what its user keeps
// of the run (S), and, for the runs that finished lately, the version they finished at. It is
// not safe for concurrent use: its user holds a lock.
type follower[S any] struct {
	live map[engine.Key]*followed[S]
	// ended holds the versions runs finished at: ended[0] the newer generation, ended[1] the
	// older, dropped when the newer one is full.
	ended [2]map[engine.Key]int64
}

// followed is a run in flight.
type followed[S any] struct {
	version int64
	state   S
}

func newFollower[S any]() *follower[S] {
	return &follower[S]{
		live:  map[engine.Key]*followed[S]{},
		ended: [2]map[engine.Key]int64{{}, {}},
	}
}

// see takes a report of run. It returns nil for a report not newer than one already taken (a
// late or repeated report), to be ignored. Otherwise it returns the run's record, with first set
// when the run was not followed until now: its first report to this process, or the first after
// it finished and was restarted.
func (f *follower[S]) see(run *engine.Run) (r *followed[S], first bool) {
	key := run.Key()
	if r := f.live[key]; r != nil {
		if run.Version <= r.version {
			return nil, false
		}
		r.version = run.Version
		return r, false
	}
	for _, ended := range f.ended {
		if v, ok := ended[key]; ok {
			if run.Version <= v {
				return nil, false
			}
			break
		}
	}
	r = &followed[S]{version: run.Version}
	f.live[key] = r
	return r, true
}

// end stops following a run that finished at version.
func (f *follower[S]) end(key engine.Key, version int64) {
	delete(f.live, key)
	if len(f.ended[0]) >= endedKept {
		f.ended[1], f.ended[0] = f.ended[0], map[engine.Key]int64{}
	}
	f.ended[0][key] = version
}

// fresh reports whether st is the status the run had after its first transition, the one that
// initialized it: every time it holds is its start time (none at all when it failed to
// initialize). A run first reported finished is counted (and traced) only then, when it
// finished in the transition that started it (a workflowRef that resolves to nothing, every step
// skipped): otherwise it finished before this process followed it, and the process that saw it
// finish counted it.
func fresh(st *v1alpha1.WorkflowRunStatus) bool {
	same := func(t metav1.Time) bool { return t.IsZero() || t.Equal(&st.StartTime) }
	if !same(st.EndTime) {
		return false
	}
	for i := range st.Steps {
		s := &st.Steps[i]
		if !same(s.FirstExecuteTime) || !same(s.LastExecuteTime) {
			return false
		}
		for j := range s.SubStepsStatus {
			if !same(s.SubStepsStatus[j].FirstExecuteTime) || !same(s.SubStepsStatus[j].LastExecuteTime) {
				return false
			}
		}
	}
	return true
}

// template is the run's template label: the Workflow it executes (spec.workflowRef), empty for
// a run whose steps are inline.
func template(run *engine.Run) string {
	if run.Object.Spec.WorkflowSpec != nil {
		return ""
	}
	return run.Object.Spec.WorkflowRef
}
