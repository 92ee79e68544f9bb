// Package assembly builds stepflow from one Config for every way of running it: the provider
// registry, the catalog of step types and templates, the step runtime, the engine and its
// telemetry. `stepflow run`, `stepflow server` and `stepflow controller` differ only in the Mode
// they plug in (the store, where stored definitions are found, what watches the runs, who owns
// which run); everything else is wired here once, so a new setting or capability lands in one
// place for all three.
package assembly

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/events"
	"github.com/stepflow/stepflow/provider/run"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/telemetry"
)

// Config is what an operator sets, the same for every mode; the zero value works, with the
// engine's and the step runtime's defaults.
type Config struct {
	// Workers is how many runs advance at once (engine.Options.Workers).
	Workers int
	// MaxEvaluations bounds the step evaluations under way (engine.Options.MaxEvaluations).
	MaxEvaluations int
	// Retry and Wait are the engine's backoffs; the zero fields take the engine's defaults.
	Retry engine.RetryPolicy
	Wait  engine.Backoff
	// Limits bound what one run may hold (engine.Limits).
	Limits engine.Limits
	// EvalTimeout bounds one evaluation of a step, an `if` or a check (step.Options.EvalTimeout).
	EvalTimeout time.Duration
	// EvalMemory bounds the memory of one CUE evaluation, in bytes (step.Options.EvalMemory).
	EvalMemory int64
	// Evaluators bounds the child CUE evaluators (step.Options.Evaluators).
	Evaluators int
	// EvalInProcess evaluates CUE in this process, without the memory bound
	// (step.Options.InProcess): for debugging.
	EvalInProcess bool
	// Retention says which finished runs are deleted with their logs; the front ends delete
	// them (the server's sweep, `stepflow run`'s, the controller's timers). The zero value
	// deletes only the runs with a ttlSecondsAfterFinished of their own or their template's.
	Retention engine.Retention
	// Providers configure the actions that reach outside the process.
	Providers Providers
	// Metrics, when set, receives stepflow's metrics (runs, steps, queue, CUE time, saves).
	Metrics prometheus.Registerer
	// Build is the version and commit of this binary, exported with Metrics as
	// stepflow_build_info.
	Build telemetry.Build
	// Tracer, when set, receives a span per run and per step (OpenTelemetry).
	Tracer trace.TracerProvider
	// EventSinks receive every run's and step's lifecycle as CloudEvents (package events):
	// http(s)://host/path (binary mode; `#structured` for structured mode) or
	// nats://host:port/subject. Call Assembly.Close to deliver what is queued.
	EventSinks []string
	// Clock is the engine's time; nil is the real one.
	Clock engine.Clock
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
}

// Mode is what one way of running plugs in. Store is required.
type Mode struct {
	// Store keeps the runs.
	Store engine.Store
	// Definitions is where stored step types and Workflow templates are found (the embedded
	// store, PostgreSQL, the controller's cache); nil has none stored, only the built-ins.
	Definitions catalog.Store
	// DefinitionsTTL, when positive, keeps what was found in Definitions that long
	// (catalog.NewCached): for a store that costs a query per look-up.
	DefinitionsTTL time.Duration
	// Observers are told of every saved transition, after the telemetry.
	Observers []engine.Observer
	// Owner, when set, says which runs this process drives (server replicas).
	Owner engine.Owner
	// Cache keeps the results of steps that have a cache (v1alpha1.StepCache); nil evaluates
	// such steps every time.
	Cache engine.Cache
	// Slots keeps the slots of concurrency keys (v1alpha1.Concurrency); nil starts runs with
	// a key as any other.
	Slots engine.Slots
}

// Assembly is stepflow wired for one mode.
type Assembly struct {
	// Catalog finds step types and templates: the mode's stored ones, then the built-ins. The
	// front ends check what they are sent with it, as the engine checks each run it starts.
	Catalog *catalog.Catalog
	// Registry holds every provider's actions.
	Registry *step.Registry
	// Runner evaluates steps and conditions.
	Runner *step.Runner
	// Engine drives the runs; call its Start.
	Engine *engine.Engine
	// Metrics are the engine's metrics; nil without Config.Metrics.
	Metrics *telemetry.Metrics
	// Events emits the runs' lifecycle to Config.EventSinks; nil without sinks.
	Events *events.Emitter
}

// Close delivers the events still queued for the sinks, until ctx is done; call it once the
// engine has stopped.
func (a *Assembly) Close(ctx context.Context) {
	if a.Events != nil {
		a.Events.Close(ctx)
	}
}

// New wires stepflow for mode from cfg.
func New(cfg Config, mode Mode) (*Assembly, error) {
	if mode.Store == nil {
		return nil, errors.New("assembly: a store is required")
	}
	a := &Assembly{}
	if mode.DefinitionsTTL > 0 && mode.Definitions != nil {
		a.Catalog = catalog.NewCached(mode.Definitions, mode.DefinitionsTTL, cfg.Limits)
	} else {
		a.Catalog = catalog.New(mode.Definitions, cfg.Limits)
	}
	providers := cfg.Providers
	if providers.Run.MaxTimeout == 0 {
		// A command is waited for within its step's evaluation.
		switch {
		case cfg.EvalTimeout == 0:
			providers.Run.MaxTimeout = step.DefaultEvalTimeout
		case cfg.EvalTimeout > 0:
			providers.Run.MaxTimeout = cfg.EvalTimeout
		}
	}
	a.Registry = Registry(providers)
	if withJobs := providers.Clusters != nil || providers.Run.Jobs != nil; !providers.AllowLocalRun || !withJobs {
		a.Catalog.RefuseSteps(run.Refuse(providers.AllowLocalRun, withJobs))
	}
	ropts := step.Options{Registry: a.Registry, Definitions: a.Catalog, EvalTimeout: cfg.EvalTimeout,
		EvalMemory: cfg.EvalMemory, Evaluators: cfg.Evaluators, InProcess: cfg.EvalInProcess, External: External(cfg.Providers)}
	st := mode.Store
	var observers engine.Observers
	var queue engine.QueueObserver
	if cfg.Metrics != nil {
		a.Metrics = telemetry.NewMetrics(cfg.Metrics)
		if err := telemetry.RegisterBuild(cfg.Metrics, cfg.Build); err != nil {
			return nil, err
		}
		ropts.ObserveEvaluation = a.Metrics.ObserveEvaluation
		ropts.ObserveBound = a.Metrics.ObserveBound
		st = a.Metrics.Store(st)
		observers = append(observers, a.Metrics)
		queue = a.Metrics
	}
	if cfg.Tracer != nil {
		observers = append(observers, telemetry.NewTracer(cfg.Tracer))
	}
	if len(cfg.EventSinks) > 0 {
		em, err := events.New(events.Options{Sinks: cfg.EventSinks, Metrics: cfg.Metrics, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		a.Events = em
		observers = append(observers, em)
	}
	observers = append(observers, mode.Observers...)
	a.Runner = step.NewRunner(ropts)
	eopts := engine.Options{
		Store:          st,
		Runner:         a.Runner,
		Conditions:     a.Runner,
		Workflows:      a.Catalog,
		Clock:          cfg.Clock,
		Logger:         cfg.Logger,
		Workers:        cfg.Workers,
		Retry:          cfg.Retry,
		Wait:           cfg.Wait,
		Limits:         cfg.Limits,
		QueueObserver:  queue,
		MaxEvaluations: cfg.MaxEvaluations,
		Owner:          mode.Owner,
		Cache:          mode.Cache,
		CacheKeys:      a.Runner,
		Slots:          mode.Slots,
		Check: func(ctx context.Context, run *engine.Run) error {
			return a.Catalog.CheckRun(ctx, a.Runner, run)
		},
	}
	switch len(observers) {
	case 0:
	case 1:
		eopts.Observer = observers[0]
	default:
		eopts.Observer = observers
	}
	a.Engine = engine.New(eopts)
	return a, nil
}
