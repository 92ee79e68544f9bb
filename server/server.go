// Package server is `stepflow server`: the REST API of docs/api.md (runs, operations, logs and
// their event streams, templates with parameters, definitions, clusters, tokens, webhook and
// cron triggers), its OpenAPI document, the dashboard's files and /metrics, over one engine
// and one store (the embedded SQLite one or PostgreSQL).
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/catalog"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/lifecycle"
	"github.com/stepflow/stepflow/step"
	"github.com/stepflow/stepflow/store"
)

// Options configure a Server. Store is required; every other zero value works.
type Options struct {
	Store store.Store
	// Assembly is the engine's, the step runtime's and the providers' configuration, as in
	// every mode. Its Providers.Clusters resolves the clusters steps name that are not stored
	// through the API (the local one among them); nil knows none. Its Metrics is the server's
	// own registry, served at /metrics, whatever is set here.
	Assembly assembly.Config
	// Web is the dashboard's files, served at /; nil serves none.
	Web fs.FS
	// Observers are told about every transition, after the server's own.
	Observers []engine.Observer
	Logger    *slog.Logger
	// AllowAnonymousRead lets requests without a token read, as viewers of every namespace.
	AllowAnonymousRead bool
	// MaxBody bounds a request body; default 1 MiB.
	MaxBody int64
	// MaxWait bounds ?wait on run creation; default 5 minutes.
	MaxWait time.Duration
	// SecureCookies marks the dashboard's cookies Secure (when served over HTTPS).
	SecureCookies bool
	// AllowKubeconfigExec lets the kubeconfigs of clusters stored through the API run
	// commands (exec credential plugins, auth-providers) and read files (certificate, key
	// and token paths) on the server's host, as the server's user. Without it they are
	// refused when stored, and when a step would use one stored before.
	AllowKubeconfigExec bool
	// Replicas, when set, shares the store with other processes: this one drives only the
	// runs it holds leases on, and hears of what the others write (store/postgres.Leases
	// among servers; store/sqlite.ServerLeases beside the CLI's processes on one data
	// directory). When nil, the server drives every run of the store.
	Replicas Replicas
}

// Replicas divides the runs of a store among the servers sharing it.
type Replicas interface {
	engine.Owner
	// Run holds this server's share until ctx ends, calling gained with the unfinished runs
	// it takes over, lost when it stops owning some (before another server may take them),
	// and changed with each write of a run by another server.
	Run(ctx context.Context, gained func([]engine.Key), lost func(), changed func(store.Change)) error
	// Release gives the share up at once, once the engine has stopped.
	Release(ctx context.Context) error
	// Sweeps reports whether this server deletes the finished run key when its retention has
	// passed, so that each run is deleted by one server.
	Sweeps(key engine.Key) bool
}

// Server serves the API. Start runs its engine and triggers; Handler answers requests.
type Server struct {
	opts    Options
	store   store.Store
	catalog *catalog.Catalog
	runner  *step.Runner
	eng     *engine.Engine
	asm     *assembly.Assembly
	hub     *hub
	// cache is the step cache over the store (the cache routes, the engine).
	cache *store.StepCache
	// clusters are the clusters runs reach, stored ones included; Applications' too.
	clusters *clusters
	// rendered keeps the components Applications' health checks render.
	rendered lifecycle.Rendered
	crons    *scheduler
	clock    engine.Clock
	log      *slog.Logger
	mux      *http.ServeMux
	routes   []route
	// doc is the OpenAPI document of routes.
	doc *openapi3.T
	// registry holds the metrics served at /metrics; http counts the API's requests.
	registry *prometheus.Registry
	http     *httpMetrics
}

// New wires a server over opts.Store.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("server: a store is required")
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = 1 << 20
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, store: opts.Store, log: opts.Logger, hub: newHub(opts.Assembly.Retention), registry: prometheus.NewRegistry()}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.http = newHTTPMetrics(s.registry)
	s.clock = opts.Assembly.Clock
	if s.clock == nil {
		s.clock = engine.RealClock{}
	}
	cfg := opts.Assembly
	s.cache = &store.StepCache{Records: opts.Store}
	s.clusters = newClusters(opts.Store, cfg.Providers.Clusters, opts.AllowKubeconfigExec)
	cfg.Providers.Clusters = s.clusters
	cfg.Metrics = s.registry
	if cfg.Logger == nil {
		cfg.Logger = opts.Logger
	}
	a, err := assembly.New(cfg, assembly.Mode{
		Store:          &publishing{Store: opts.Store, hub: s.hub},
		Definitions:    opts.Store,
		DefinitionsTTL: time.Second,
		Observers:      append([]engine.Observer{s.hub, appSyncer{s}}, opts.Observers...),
		Owner:          ownerOf(opts.Replicas),
		Cache:          s.cache,
		Slots:          &store.Slots{Records: opts.Store},
	})
	if err != nil {
		return nil, err
	}
	s.catalog, s.runner, s.eng, s.asm = a.Catalog, a.Runner, a.Engine, a
	s.crons = newScheduler(s)
	s.routes = s.routeTable()
	if s.doc, err = openAPIDocument(s.routes); err != nil {
		return nil, err
	}
	s.mux = s.buildMux()
	return s, nil
}

// Engine is the engine the server drives its runs with.
func (s *Server) Engine() *engine.Engine { return s.eng }

// Handler answers the API, the dashboard and /metrics.
func (s *Server) Handler() http.Handler { return s.mux }

// Start runs the engine and the cron triggers until ctx ends. Runs left unfinished by an
// earlier process are picked up first; with Replicas, those of the shards this server takes.
func (s *Server) Start(ctx context.Context) error {
	errc := make(chan error, 4)
	go func() { errc <- s.eng.Start(ctx) }()
	go func() { errc <- s.sweep(ctx) }()
	waits := 3
	if r := s.opts.Replicas; r != nil {
		waits++
		go func() { errc <- r.Run(ctx, s.takeOver, s.eng.DropUnowned, s.remoteChange) }()
	} else if err := s.recover(ctx); err != nil {
		s.log.Error("pick up unfinished runs", "err", err)
	}
	go func() { errc <- s.crons.run(ctx) }()
	var errs []error
	for range waits {
		errs = append(errs, <-errc)
	}
	// The engine has stopped: the events it queued go out (for a few seconds at most).
	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	s.asm.Close(ectx)
	ecancel()
	if r := s.opts.Replicas; r != nil {
		// The engine has stopped: the other servers may take its runs at once.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		errs = append(errs, r.Release(rctx))
	}
	err := errors.Join(errs...)
	select {
	case <-ctx.Done():
		return nil // stopped, not failed
	default:
		return err
	}
}

// sweep deletes the finished runs past their retention (Assembly.Retention, and each run's
// own TTL), with their logs, now and every store.SweepEvery until ctx ends; with Replicas,
// only the runs it Sweeps.
func (s *Server) sweep(ctx context.Context) error {
	var owns func(engine.Key) bool
	if r := s.opts.Replicas; r != nil {
		owns = r.Sweeps
	}
	tick := make(chan struct{}, 1)
	for {
		keys, err := store.Sweep(ctx, s.store, s.opts.Assembly.Retention, s.clock.Now(), owns)
		for _, k := range keys {
			s.hub.deleted(k)
		}
		if len(keys) > 0 {
			s.log.Info("deleted finished runs past their retention", "runs", len(keys))
		}
		if err != nil && ctx.Err() == nil {
			s.log.Error("delete the finished runs past their retention", "err", err)
		}
		if n, err := s.eng.SweepSlots(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("give up the slots of finished runs", "err", err)
		} else if n > 0 {
			s.log.Info("gave up the concurrency slots of finished or deleted runs", "slots", n)
		}
		stop := s.clock.AfterFunc(store.SweepEvery, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-tick:
		}
	}
}

// takeOver queues the runs of the shards this server took.
func (s *Server) takeOver(keys []engine.Key) {
	for _, k := range keys {
		s.eng.Enqueue(k)
	}
}

// remoteChange acts on another server's write of a run: the run's owner looks at it again,
// and the requests following it here are told.
func (s *Server) remoteChange(c store.Change) {
	if c.Version == store.Deleted {
		s.hub.deleted(c.Key)
		return
	}
	if s.opts.Replicas.Owns(c.Key) {
		if c.Version == store.Nudge {
			s.eng.Wake(c.Key)
		}
		s.eng.Enqueue(c.Key)
		return
	}
	if c.Version == store.Nudge || !s.hub.following(c.Key) {
		return
	}
	run, err := s.store.Load(context.Background(), c.Key)
	if err != nil {
		return
	}
	s.hub.remote(run)
}

// recover queues the runs an earlier process left unfinished.
func (s *Server) recover(ctx context.Context) error {
	runs, err := s.store.List(ctx, store.ListOptions{})
	if err != nil {
		return fmt.Errorf("list the runs: %w", err)
	}
	for _, r := range runs {
		switch r.Phase {
		case v1alpha1.RunSucceeded, v1alpha1.RunFailed, v1alpha1.RunTerminated:
		default:
			s.eng.Enqueue(engine.Key{Namespace: r.Namespace, Name: r.Name})
		}
	}
	return nil
}

// ownerOf is the engine's Owner of a server with replicas, nil without: a nil Replicas must not
// become a non-nil interface.
func ownerOf(r Replicas) engine.Owner {
	if r == nil {
		return nil
	}
	return r
}
