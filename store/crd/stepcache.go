// stepcache.go: the step cache of Kubernetes mode, in ConfigMaps.

package crd

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

const (
	// LabelStepCache marks the ConfigMaps holding step cache entries (StepCache), one each,
	// named stepflow-cache-<key> in the entry's namespace.
	LabelStepCache = "workflowrun.oam.dev/step-cache"
	cacheEntryKey  = "entry"
	cachePrefix    = "stepflow-cache-"
)

// StepCache is engine.Cache in ConfigMaps, for the controller: an entry is a ConfigMap of its
// namespace, labelled LabelStepCache, read from the API server (Client). Its bounds are those
// of store.StepCache, kept alike: the namespace's oldest entries evicted once a tenth of a
// bound was written by this StepCache since it last looked. The zero value with a Client is
// ready to use.
type StepCache struct {
	Client client.Client
	// MaxEntries and MaxBytes bound a namespace's cache; zero takes store.DefaultCacheEntries
	// and store.DefaultCacheBytes.
	MaxEntries int
	MaxBytes   int

	mu      sync.Mutex
	written map[string][2]int // per namespace: entries and bytes written since the last look
}

func cacheName(key string) string { return cachePrefix + key }

// CachedResult implements engine.Cache.
func (c *StepCache) CachedResult(ctx context.Context, namespace, key string) (*engine.CacheEntry, error) {
	cm := &corev1.ConfigMap{}
	err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: cacheName(key)}, cm)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("step cache entry %s/%s: %w", namespace, key, engine.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("step cache entry %s/%s: %w", namespace, key, err)
	}
	return decodeCacheEntry(cm)
}

func decodeCacheEntry(cm *corev1.ConfigMap) (*engine.CacheEntry, error) {
	e := &engine.CacheEntry{}
	if err := json.Unmarshal([]byte(cm.Data[cacheEntryKey]), e); err != nil {
		return nil, fmt.Errorf("step cache entry %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return e, nil
}

// PutCachedResult implements engine.Cache.
func (c *StepCache) PutCachedResult(ctx context.Context, e *engine.CacheEntry) error {
	maxEntries, maxBytes := cmp.Or(c.MaxEntries, store.DefaultCacheEntries), cmp.Or(c.MaxBytes, store.DefaultCacheBytes)
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("step cache entry: %w", err)
	}
	if len(data) > min(maxBytes, blobPart) {
		return fmt.Errorf("the result is %d bytes, more than the step cache keeps (%d)", len(data), min(maxBytes, blobPart))
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: cacheName(e.Key), Namespace: e.Namespace, Labels: map[string]string{LabelStepCache: "true"}},
		Data:       map[string]string{cacheEntryKey: string(data)},
	}
	for range 5 {
		err = c.Client.Create(ctx, cm.DeepCopy())
		if apierrors.IsAlreadyExists(err) {
			old := &corev1.ConfigMap{}
			if err = c.Client.Get(ctx, client.ObjectKeyFromObject(cm), old); err != nil {
				continue
			}
			old.Labels, old.Data = cm.Labels, cm.Data
			err = c.Client.Update(ctx, old) // by its resourceVersion: a conflict tries again
		}
		if err == nil || !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("step cache entry %s/%s: %w", e.Namespace, e.Key, err)
	}
	if !c.due(e.Namespace, len(data), maxEntries, maxBytes) {
		return nil
	}
	return c.evict(ctx, e.Namespace, maxEntries, maxBytes)
}

// due counts a write and reports whether it is time to evict.
func (c *StepCache) due(namespace string, size, maxEntries, maxBytes int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.written == nil {
		c.written = map[string][2]int{}
	}
	w := c.written[namespace]
	w[0]++
	w[1] += size
	if w[0] < max(1, maxEntries/10) && w[1] < maxBytes/10 {
		c.written[namespace] = w
		return false
	}
	delete(c.written, namespace)
	return true
}

// entries lists the ConfigMaps of the namespace's entries (every namespace's for "").
func (c *StepCache) entries(ctx context.Context, namespace string) ([]corev1.ConfigMap, error) {
	var list corev1.ConfigMapList
	opts := []client.ListOption{client.MatchingLabels{LabelStepCache: "true"}}
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := c.Client.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("list the step cache's entries: %w", err)
	}
	return list.Items, nil
}

// evict deletes the namespace's oldest entries past the bounds.
func (c *StepCache) evict(ctx context.Context, namespace string, maxEntries, maxBytes int) error {
	cms, err := c.entries(ctx, namespace)
	if err != nil {
		return err
	}
	type sized struct {
		cm    *corev1.ConfigMap
		entry *engine.CacheEntry
		size  int
	}
	all := make([]sized, 0, len(cms))
	total := 0
	for i := range cms {
		e, err := decodeCacheEntry(&cms[i])
		if err != nil {
			e = &engine.CacheEntry{} // unreadable: the oldest, evicted first
		}
		size := len(cms[i].Data[cacheEntryKey])
		total += size
		all = append(all, sized{&cms[i], e, size})
	}
	slices.SortFunc(all, func(a, b sized) int {
		return cmp.Or(a.entry.Created.Compare(b.entry.Created), strings.Compare(a.cm.Name, b.cm.Name))
	})
	for i := 0; i < len(all) && (len(all)-i > maxEntries || total > maxBytes); i++ {
		if err := c.Client.Delete(ctx, all[i].cm); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("evict a step cache entry: %w", err)
		}
		total -= all[i].size
	}
	return nil
}

// List returns the entries of a namespace's cache ("": every namespace's), newest first.
func (c *StepCache) List(ctx context.Context, namespace string) ([]*engine.CacheEntry, error) {
	cms, err := c.entries(ctx, namespace)
	if err != nil {
		return nil, err
	}
	out := make([]*engine.CacheEntry, 0, len(cms))
	for i := range cms {
		if e, err := decodeCacheEntry(&cms[i]); err == nil {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b *engine.CacheEntry) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// Drop deletes one entry, or returns an error wrapping engine.ErrNotFound.
func (c *StepCache) Drop(ctx context.Context, namespace, key string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cacheName(key), Namespace: namespace}}
	err := c.Client.Delete(ctx, cm)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("step cache entry %s/%s: %w", namespace, key, engine.ErrNotFound)
	}
	return err
}

// DropAll deletes the entries of a namespace ("": of every namespace) and says how many.
func (c *StepCache) DropAll(ctx context.Context, namespace string) (int, error) {
	cms, err := c.entries(ctx, namespace)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range cms {
		err := c.Client.Delete(ctx, &cms[i])
		if err != nil && !apierrors.IsNotFound(err) {
			return n, err
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}
