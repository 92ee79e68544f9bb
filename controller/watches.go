package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/kube"
)

// ClusterConfigs gives the connection to a named cluster; "" is the local one.
type ClusterConfigs interface {
	Config(ctx context.Context, name string) (*rest.Config, error)
}

// objectRef names what a step read: one object (name set) or a list (name empty; namespace
// empty for every namespace), in a cluster of the registry.
type objectRef struct {
	cluster   string
	gvk       schema.GroupVersionKind
	namespace string
	name      string
}

type kindRef struct {
	cluster string
	gvk     schema.GroupVersionKind
}

// Watches remembers which runs read which objects, watches those kinds (metadata only) in their
// clusters, and wakes the runs when an object they read changes. It is a manager.Runnable: the
// watches live as long as the manager, and only on the leader.
type Watches struct {
	clusters ClusterConfigs
	local    *rest.Config
	log      *slog.Logger
	wake     func(engine.Key)

	mu       sync.Mutex
	ctx      context.Context
	readers  map[objectRef]map[engine.Key]struct{}
	byRun    map[engine.Key]map[objectRef]struct{}
	kinds    map[kindRef]bool
	starting []kindRef
}

// NewWatches returns an index; local reaches the cluster named "", clusters the others (nil
// means only the local cluster is watched).
func NewWatches(local *rest.Config, clusters ClusterConfigs, log *slog.Logger) *Watches {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watches{
		clusters: clusters, local: local, log: log,
		readers: map[objectRef]map[engine.Key]struct{}{},
		byRun:   map[engine.Key]map[objectRef]struct{}{},
		kinds:   map[kindRef]bool{},
	}
}

// ObjectRead implements the kube provider's ReadObserver: it records that a step of run read
// the object (or listed the kind), and watches that kind from now on.
func (w *Watches) ObjectRead(_ context.Context, run engine.Key, _ string, r kube.ObjectRef) {
	ref := objectRef{cluster: r.Cluster, gvk: r.GVK, namespace: r.Namespace, name: r.Name}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.readers[ref] == nil {
		w.readers[ref] = map[engine.Key]struct{}{}
	}
	w.readers[ref][run] = struct{}{}
	if w.byRun[run] == nil {
		w.byRun[run] = map[objectRef]struct{}{}
	}
	w.byRun[run][ref] = struct{}{}
	k := kindRef{cluster: ref.cluster, gvk: ref.gvk}
	if w.kinds[k] {
		return
	}
	w.kinds[k] = true
	if w.ctx == nil {
		w.starting = append(w.starting, k)
		return
	}
	// The watch serves every run that reads this kind, for as long as the Watches run: it
	// lives in Start's context, not in that of the step that happened to read first.
	go w.watch(w.ctx, k) //nolint:contextcheck // outlives the read on purpose; see above
}

// Forget drops what a run read: it finished or was deleted.
func (w *Watches) Forget(run engine.Key) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ref := range w.byRun[run] {
		delete(w.readers[ref], run)
		if len(w.readers[ref]) == 0 {
			delete(w.readers, ref)
		}
	}
	delete(w.byRun, run)
}

// Start implements manager.Runnable: watches run until ctx ends.
func (w *Watches) Start(ctx context.Context) error {
	w.mu.Lock()
	w.ctx = ctx
	pending := w.starting
	w.starting = nil
	w.mu.Unlock()
	for _, k := range pending {
		go w.watch(ctx, k)
	}
	<-ctx.Done()
	return nil
}

// watch runs a metadata informer over one kind of one cluster.
func (w *Watches) watch(ctx context.Context, k kindRef) {
	if err := w.run(ctx, k); err != nil {
		w.log.Warn("cannot watch; runs reading it wait for their backoff", "cluster", k.cluster, "kind", k.gvk.String(), "err", err)
		w.mu.Lock()
		delete(w.kinds, k) // tried again at the next read
		w.mu.Unlock()
	}
}

func (w *Watches) run(ctx context.Context, k kindRef) error {
	cfg := w.local
	if k.cluster != "" {
		if w.clusters == nil {
			return fmt.Errorf("no cluster registry")
		}
		var err error
		if cfg, err = w.clusters.Config(ctx, k.cluster); err != nil {
			return err
		}
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return err
	}
	mapping, err := mapper.RESTMapping(k.gvk.GroupKind(), k.gvk.Version)
	if err != nil {
		return err
	}
	mc, err := metadata.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return err
	}
	inf := metadatainformer.NewFilteredMetadataInformer(mc, mapping.Resource, metav1.NamespaceAll, 0, toolscache.Indexers{}, nil)
	changed := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		m, ok := obj.(metav1.Object)
		if !ok {
			return
		}
		w.changed(k, m.GetNamespace(), m.GetName())
	}
	if _, err := inf.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(_, obj any) { changed(obj) },
		DeleteFunc: changed,
	}); err != nil {
		return err
	}
	w.log.Info("watching for waiting steps", "cluster", k.cluster, "resource", mapping.Resource.String())
	inf.Informer().Run(ctx.Done())
	return nil
}

// changed wakes the runs that read the object or listed its namespace or kind.
func (w *Watches) changed(k kindRef, namespace, name string) {
	refs := []objectRef{
		{cluster: k.cluster, gvk: k.gvk, namespace: namespace, name: name},
		{cluster: k.cluster, gvk: k.gvk, namespace: namespace},
		{cluster: k.cluster, gvk: k.gvk},
	}
	var wake []engine.Key
	w.mu.Lock()
	for _, ref := range refs {
		for run := range w.readers[ref] {
			wake = append(wake, run)
		}
	}
	w.mu.Unlock()
	if w.wake == nil {
		return
	}
	for _, run := range wake {
		w.wake(run)
	}
}
