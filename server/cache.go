// cache.go: the step cache's routes: its entries listed and dropped.

package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/stepflow/stepflow/engine"
)

// cacheEntryView is a step cache entry as the API shows it: where the result came from and
// what its outputs are (a result holding a sensitive value is never cached).
type cacheEntryView struct {
	Namespace string `json:"namespace"`
	// Key is the entry's key, the hash of its step type and evaluated key.
	Key      string    `json:"key"`
	StepType string    `json:"stepType"`
	Run      string    `json:"run"`
	Step     string    `json:"step"`
	Created  time.Time `json:"created"`
	// Outputs are the step's outputs, which a step taking the entry outputs again.
	Outputs map[string]json.RawMessage `json:"outputs,omitempty"`
}

// cacheDropped says how many entries a drop deleted.
type cacheDropped struct {
	Dropped int `json:"dropped"`
}

func viewOfEntry(e *engine.CacheEntry) cacheEntryView {
	return cacheEntryView{Namespace: e.Namespace, Key: e.Key, StepType: e.StepType, Run: e.Run, Step: e.Step, Created: e.Created, Outputs: e.Outputs}
}

func (s *Server) listCache(w http.ResponseWriter, r *http.Request) error {
	entries, err := s.cache.List(r.Context(), r.URL.Query().Get("namespace"))
	if err != nil {
		return err
	}
	id := identityOf(r.Context())
	items := []cacheEntryView{}
	for _, e := range entries {
		if id.sees(e.Namespace) {
			items = append(items, viewOfEntry(e))
		}
	}
	writeJSON(w, http.StatusOK, listOf[cacheEntryView]{Items: items})
	return nil
}

func (s *Server) dropCacheEntry(w http.ResponseWriter, r *http.Request) error {
	ns, key := r.PathValue("namespace"), r.PathValue("key")
	if err := seesOrNotFound(r.Context(), "cache entry", ns, key); err != nil {
		return err
	}
	if err := s.cache.Drop(r.Context(), ns, key); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) dropCache(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("namespace")
	if err := seesOrNotFound(r.Context(), "cache of namespace", ns, ""); err != nil {
		return err
	}
	n, err := s.cache.DropAll(r.Context(), ns)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cacheDropped{Dropped: n})
	return nil
}
