// slots.go: the slots of concurrency keys in Kubernetes mode, and their sweep.

package controller

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	crdstore "github.com/stepflow/stepflow/store/crd"
)

// shardSlots is engine.Slots over ConfigMaps (store.Slots over crdstore.Records), whose
// Holders leaves out the runs of other controllers: those that are not in this controller's
// cache (another shard's) but are in the API server. Every controller sharing the API server
// shares the keys, whatever its shard, so the engine's sweep must not give up the slots of the
// runs it does not see; it sees the runs that are gone, and those of its shard.
type shardSlots struct {
	store.Slots
	cache  client.Reader
	direct client.Reader
}

// newSlots keeps the slots in ConfigMaps written through direct.
func newSlots(cache client.Reader, direct client.Client) *shardSlots {
	return &shardSlots{Slots: store.Slots{Records: &crdstore.Records{Client: direct}}, cache: cache, direct: direct}
}

// Holders implements engine.Slots: the holders whose run is in the cache or is gone.
func (s *shardSlots) Holders(ctx context.Context) ([]engine.SlotHolder, error) {
	all, err := s.Slots.Holders(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, h := range all {
		// A holder may be a run's step ("<run>/<step>"): the run is what is looked up.
		name, _, _ := strings.Cut(h.Run, "/")
		key := client.ObjectKey{Namespace: h.Namespace, Name: name}
		err := s.cache.Get(ctx, key, &v1alpha1.WorkflowRun{})
		if err == nil {
			out = append(out, h)
			continue
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("run %s: %w", key, err)
		}
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("WorkflowRun"))
		switch err := s.direct.Get(ctx, key, meta); {
		case apierrors.IsNotFound(err):
			out = append(out, h) // gone: the sweep gives its slot up
		case err != nil:
			return nil, fmt.Errorf("run %s: %w", key, err)
		}
		// Another shard's run, or one the cache has not seen yet: not this controller's.
	}
	return out, nil
}

// sweepSlots gives up the slots of concurrency keys held by runs that are gone or finished
// (engine.SweepSlots) as it starts, every store.SweepEvery, and soon after a run is deleted
// (sweepNow), until ctx ends. It runs with the engine, so only the leader sweeps.
func (c *Controller) sweepSlots(ctx context.Context) error {
	tick := make(chan struct{}, 1)
	for {
		if n, err := c.engine.SweepSlots(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("give up the slots of finished or deleted runs", "err", err)
		} else if n > 0 {
			c.log.Info("gave up the concurrency slots of finished or deleted runs", "slots", n)
		}
		stop := c.clock.AfterFunc(store.SweepEvery, func() {
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
		case <-c.sweepNow:
			stop()
		}
	}
}

// deleted asks the sweep to look now: a deleted run may have held a slot.
func (c *Controller) deleted() {
	select {
	case c.sweepNow <- struct{}{}:
	default:
	}
}
