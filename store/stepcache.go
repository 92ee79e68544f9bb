// stepcache.go: the step cache (engine.Cache) over a store's Records.

package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/stepflow/stepflow/engine"
)

// RecordStepCache is the kind of the records that hold the step cache's entries, keyed
// "<namespace>/<key>".
const RecordStepCache = "stepcache"

// The default bounds of a namespace's step cache (StepCache).
const (
	DefaultCacheEntries = 1000
	DefaultCacheBytes   = 16 << 20
)

// StepCache is engine.Cache over a store's Records, bounded per namespace: the namespace's
// oldest entries are evicted until at most MaxEntries entries of at most MaxBytes (their
// JSON) in all are left. An entry larger than MaxBytes is not kept. Eviction reads the
// namespace's entries, so it is made only once a tenth of either bound was written by this
// StepCache since it last looked (after every write for bounds under 10 entries): a namespace
// may hold a tenth more than its bounds meanwhile. It is safe for several processes on one
// store, each counting its own writes. The zero value is ready to use.
type StepCache struct {
	Records Records
	// MaxEntries and MaxBytes bound a namespace's cache; zero takes DefaultCacheEntries and
	// DefaultCacheBytes.
	MaxEntries int
	MaxBytes   int

	mu sync.Mutex
	// written counts, per namespace, the entries and bytes written since it was last looked at.
	written map[string]written
}

type written struct{ entries, bytes int }

// due counts a write of size bytes in namespace and reports whether it is time to evict.
func (c *StepCache) due(namespace string, size, maxEntries, maxBytes int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.written == nil {
		c.written = map[string]written{}
	}
	w := c.written[namespace]
	w.entries++
	w.bytes += size
	if w.entries < max(1, maxEntries/10) && w.bytes < maxBytes/10 {
		c.written[namespace] = w
		return false
	}
	delete(c.written, namespace)
	return true
}

func (c *StepCache) bounds() (int, int) {
	return cmp.Or(c.MaxEntries, DefaultCacheEntries), cmp.Or(c.MaxBytes, DefaultCacheBytes)
}

// CachedResult implements engine.Cache.
func (c *StepCache) CachedResult(ctx context.Context, namespace, key string) (*engine.CacheEntry, error) {
	rec, err := c.Records.Record(ctx, RecordStepCache, namespace+"/"+key)
	if err != nil {
		return nil, err
	}
	return decodeEntry(rec)
}

func decodeEntry(rec Record) (*engine.CacheEntry, error) {
	e := &engine.CacheEntry{}
	if err := json.Unmarshal(rec.Data, e); err != nil {
		return nil, fmt.Errorf("step cache entry %s: %w", rec.Key, err)
	}
	return e, nil
}

// PutCachedResult implements engine.Cache.
func (c *StepCache) PutCachedResult(ctx context.Context, e *engine.CacheEntry) error {
	maxEntries, maxBytes := c.bounds()
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("step cache entry: %w", err)
	}
	if len(data) > maxBytes {
		return fmt.Errorf("the result is %d bytes, more than the step cache holds in a namespace (%d)", len(data), maxBytes)
	}
	id := e.Namespace + "/" + e.Key
	for range 5 {
		var version int64
		old, err := c.Records.Record(ctx, RecordStepCache, id)
		switch {
		case err == nil:
			version = old.Version
		case !errors.Is(err, engine.ErrNotFound):
			return err
		}
		_, err = c.Records.PutRecord(ctx, RecordStepCache, id, data, version)
		if errors.Is(err, ErrExists) || errors.Is(err, engine.ErrConflict) || errors.Is(err, engine.ErrNotFound) {
			continue // another writer came between: read it again
		}
		if err != nil {
			return err
		}
		if !c.due(e.Namespace, len(data), maxEntries, maxBytes) {
			return nil
		}
		return c.evict(ctx, e.Namespace, maxEntries, maxBytes)
	}
	return fmt.Errorf("step cache entry %s: written by others meanwhile, again and again", id)
}

// evict deletes the namespace's oldest entries past the bounds.
func (c *StepCache) evict(ctx context.Context, namespace string, maxEntries, maxBytes int) error {
	recs, err := c.Records.Records(ctx, RecordStepCache, namespace+"/")
	if err != nil {
		return err
	}
	type sized struct {
		rec   Record
		entry *engine.CacheEntry
	}
	all := make([]sized, 0, len(recs))
	total := 0
	for _, r := range recs {
		total += len(r.Data)
		e, err := decodeEntry(r)
		if err != nil {
			e = &engine.CacheEntry{} // unreadable: the oldest, evicted first
		}
		all = append(all, sized{r, e})
	}
	slices.SortFunc(all, func(a, b sized) int {
		return cmp.Or(a.entry.Created.Compare(b.entry.Created), strings.Compare(a.rec.Key, b.rec.Key))
	})
	for i := 0; i < len(all) && (len(all)-i > maxEntries || total > maxBytes); i++ {
		err := c.Records.DeleteRecord(ctx, RecordStepCache, all[i].rec.Key)
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return err
		}
		total -= len(all[i].rec.Data)
	}
	return nil
}

// List returns the entries of a namespace's cache ("": every namespace's), newest first.
func (c *StepCache) List(ctx context.Context, namespace string) ([]*engine.CacheEntry, error) {
	prefix := ""
	if namespace != "" {
		prefix = namespace + "/"
	}
	recs, err := c.Records.Records(ctx, RecordStepCache, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]*engine.CacheEntry, 0, len(recs))
	for _, r := range recs {
		if e, err := decodeEntry(r); err == nil {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b *engine.CacheEntry) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// Drop deletes one entry, or returns an error wrapping engine.ErrNotFound.
func (c *StepCache) Drop(ctx context.Context, namespace, key string) error {
	return c.Records.DeleteRecord(ctx, RecordStepCache, namespace+"/"+key)
}

// DropAll deletes the entries of a namespace ("": of every namespace) and says how many.
func (c *StepCache) DropAll(ctx context.Context, namespace string) (int, error) {
	prefix := ""
	if namespace != "" {
		prefix = namespace + "/"
	}
	recs, err := c.Records.Records(ctx, RecordStepCache, prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		err := c.Records.DeleteRecord(ctx, RecordStepCache, r.Key)
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return n, err
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}
