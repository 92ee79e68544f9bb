package application

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/stepflow/stepflow/api/v1beta1"
)

// JudgedVar is the prefix of the run variables that hold, per step, the health a delivering
// step judged its components at its last evaluation: JudgedVar+<step name> holds a JSON list
// of Judged, replaced at each evaluation of the step (as AppliedVar is).
const JudgedVar = "stepflow.health/"

// Judged is the health a delivering step judged one component in one place (cluster and
// namespace), on the objects as its applies returned them, with the workload it applied there.
type Judged struct {
	Status   v1beta1.ApplicationComponentStatus `json:"status"`
	Workload *v1beta1.ObjectReference           `json:"workload,omitempty"`
}

// JudgedBy reads the health a delivery run's steps judged from its variables (JudgedVar), in
// the order of the steps' names: the lifecycle takes the Application's services from them
// when it sees the run succeed, instead of judging the live objects again a moment later.
func JudgedBy(vars map[string]json.RawMessage) ([]Judged, error) {
	names := make([]string, 0, len(vars))
	for name := range vars {
		if strings.HasPrefix(name, JudgedVar) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []Judged
	for _, name := range names {
		var list []Judged
		if err := json.Unmarshal(vars[name], &list); err != nil {
			return nil, fmt.Errorf("run variable %s: %w", name, err)
		}
		out = append(out, list...)
	}
	return out, nil
}
