// wire.go: the messages between the Runner and its child evaluators (evaluators.go,
// evaluator.go), one JSON value per line on the child's stdin and stdout.

package step

import (
	"encoding/json"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
)

// wireVersion changes with the messages: a child of another build refuses the hello.
const wireVersion = 6

// request is a message from the Runner to a child: exactly one field is set besides ID.
// A child holds several evaluations (those of steps parked at an action) and computes one
// message at a time, in the order they came; the Runner sends the next ones while it
// computes, so that they wait for it there. ID names the evaluation a message is about, and
// its reply carries the same; a request has exactly one reply.
type request struct {
	ID    uint64        `json:"id,omitempty"`
	Hello *hello        `json:"hello,omitempty"`
	Step  *stepRequest  `json:"step,omitempty"`
	Acted *acted        `json:"acted,omitempty"` // the answer to the child's action
	Abort bool          `json:"abort,omitempty"` // the action failed: the evaluation ends
	If    *ifRequest    `json:"if,omitempty"`
	Check *checkRequest `json:"check,omitempty"`
	X     *xRequest     `json:"x,omitempty"`
	// Describe describes the parameter of the template it holds (Runner.Describe).
	Describe *string `json:"describe,omitempty"`
	// Render renders an Application's components (Runner.Render).
	Render *application.RenderJob `json:"render,omitempty"`
	// Health judges a rendered component against its live objects (Runner.Health).
	Health *application.HealthJob `json:"health,omitempty"`
	// Withdraw takes back the messages of these IDs, if the child has not begun them; each
	// taken back is answered Withdrawn. It has no ID and no reply of its own.
	Withdraw []uint64 `json:"withdraw,omitempty"`
}

// hello is the first message to a child: what its Runner is made of.
type hello struct {
	Version         int           `json:"version"`
	Packages        []Package     `json:"packages"`
	Actions         []actionShape `json:"actions"`
	ContextLifetime int           `json:"contextLifetime"`
	MaxDefinitions  int           `json:"maxDefinitions"`
	MaxActions      int           `json:"maxActions"`
	Memory          int64         `json:"memory"`
}

// actionShape is what the CUE half of an evaluation needs of an action: how its template
// looks. The action runs in the Runner.
type actionShape struct {
	Provider         string   `json:"provider"`
	Do               string   `json:"do"`
	LegacyResult     string   `json:"legacyResult,omitempty"`
	LegacyOutputs    []string `json:"legacyOutputs,omitempty"`
	AcceptIncomplete bool     `json:"acceptIncomplete,omitempty"`
}

// source is a definition as a child receives it: by key, with its text the first time a
// child is sent it.
type source struct {
	Type   string `json:"type"`
	Key    string `json:"key"`
	Source string `json:"source,omitempty"`
}

// stepRequest starts the evaluation of a step.
type stepRequest struct {
	source
	Properties json.RawMessage      `json:"properties,omitempty"`
	Context    json.RawMessage      `json:"context,omitempty"`
	Outputs    v1alpha1.StepOutputs `json:"outputs,omitempty"`
}

// ifRequest evaluates a step's `if`, or with Key its cache key (with Compile, only compiles it).
type ifRequest struct {
	Expr    string          `json:"expr"`
	Scope   json.RawMessage `json:"scope"`
	Key     bool            `json:"key,omitempty"`
	Compile bool            `json:"compile,omitempty"`
}

// checkRequest compiles a definition (Compile) or checks properties against it.
type checkRequest struct {
	source
	Compile    bool            `json:"compile,omitempty"`
	Namespace  string          `json:"namespace,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
	Filled     []string        `json:"filled,omitempty"`
}

// xRequest checks an X-Definition's CUE (package application): its template compiles
// (Properties nil and Compile set), or properties fit its parameter.
type xRequest struct {
	Template   string          `json:"template"`
	Compile    bool            `json:"compile,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
	Filled     []string        `json:"filled,omitempty"`
}

// reply is a message from a child to the Runner.
type reply struct {
	ID uint64 `json:"id,omitempty"` // the request's
	// Missing asks for the request again with the definition's source.
	Missing bool `json:"missing,omitempty"`
	// Withdrawn answers a request taken back (request.Withdraw) before it began.
	Withdrawn bool `json:"withdrawn,omitempty"`
	// Sensitive are values found marked @sensitive() since the last reply.
	Sensitive []string     `json:"sensitive,omitempty"`
	Action    *actionCall  `json:"action,omitempty"`
	Done      *stepDone    `json:"done,omitempty"`
	If        *ifDone      `json:"if,omitempty"`
	Check     *checkDone   `json:"check,omitempty"`
	X         *xDone       `json:"x,omitempty"`
	Described *described   `json:"described,omitempty"`
	Rendered  *rendered    `json:"rendered,omitempty"`
	Judged    *judged      `json:"judged,omitempty"`
	Failure   *wireFailure `json:"failure,omitempty"` // a request the child could not read
}

// stepDone ends the evaluation of a step.
type stepDone struct {
	Outputs     map[string]json.RawMessage `json:"outputs,omitempty"`
	Failure     *wireFailure               `json:"failure,omitempty"`  // the step fails
	Terminal    *wireFailure               `json:"terminal,omitempty"` // an engine.TerminalError
	Error       string                     `json:"error,omitempty"`    // another error
	Aborted     bool                       `json:"aborted,omitempty"`  // ended by Abort
	LoneSuspend string                     `json:"loneSuspend,omitempty"`
}

// wireFailure is a failure or a terminal error: a reason and a message.
type wireFailure struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type ifDone struct {
	Value bool `json:"value"`
	// Key is a cache key's value.
	Key   json.RawMessage `json:"key,omitempty"`
	Error string          `json:"error,omitempty"`
}

type described struct {
	Parameters []Parameter `json:"parameters,omitempty"`
	Error      string      `json:"error,omitempty"`
}

type xDone struct {
	Error      string                      `json:"error,omitempty"`
	Properties []application.PropertyError `json:"properties,omitempty"`
}

type checkDone struct {
	Error      string         `json:"error,omitempty"`
	Properties PropertyErrors `json:"properties,omitempty"`
}

// rendered answers a Render request.
type rendered struct {
	Components []*application.Component `json:"components,omitempty"`
	Error      string                   `json:"error,omitempty"`
}

// judged answers a Health request.
type judged struct {
	Status v1beta1.ApplicationComponentStatus `json:"status"`
	Error  string                             `json:"error,omitempty"`
}
