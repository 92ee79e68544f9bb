package controller

import (
	"slices"
	"strconv"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1beta1"
)

// written remembers the controller's last write of each Application (the object as written),
// and the resourceVersion of its last write of each ApplicationRevision and ResourceTracker of
// an Application. The Application reconciler reads these from the manager's cache, which
// costs the API server nothing but may lag behind a write made a moment ago: an Application
// cached older than the controller's own write is taken as written, a revision or tracker
// cached older (or missing) is read again from the API server. It also tells the watch events of the
// controller's own Application writes from those of others.
type written struct {
	mu sync.Mutex
	// apps are the Applications as the controller last wrote them, by namespace/name.
	apps map[client.ObjectKey]*v1beta1.Application
	// own are the resourceVersions of the controller's last few writes of each Application:
	// the watch events of two writes in a row may come after both.
	own map[client.ObjectKey][]string
	// parts are the versions of an Application's revisions and trackers, by kind and name.
	parts map[client.ObjectKey]map[string]int64
}

func newWritten() *written {
	return &written{apps: map[client.ObjectKey]*v1beta1.Application{}, own: map[client.ObjectKey][]string{}, parts: map[client.ObjectKey]map[string]int64{}}
}

// version parses a resourceVersion; kube-apiserver's are etcd revisions, increasing numbers.
func version(rv string) int64 {
	v, err := strconv.ParseInt(rv, 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// app records a write of an Application: app as the API server answered it.
func (w *written) app(app *v1beta1.Application) {
	w.mu.Lock()
	defer w.mu.Unlock()
	key := client.ObjectKeyFromObject(app)
	w.apps[key] = app.DeepCopy()
	w.own[key] = append(w.own[key], app.ResourceVersion)
	if n := len(w.own[key]); n > ownWrites {
		w.own[key] = w.own[key][n-ownWrites:]
	}
}

// ownWrites is how many of an Application's last writes are told apart as the controller's.
const ownWrites = 4

// newerApp returns a copy of the Application as last written when that is newer than the
// copy at rv (the cache's); nil otherwise.
func (w *written) newerApp(key client.ObjectKey, rv string) *v1beta1.Application {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.apps[key]
	if !ok || version(rv) >= version(last.ResourceVersion) {
		return nil
	}
	return last.DeepCopy()
}

// ownApp says whether rv is the Application's version from one of the controller's own last
// writes.
func (w *written) ownApp(key client.ObjectKey, rv string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.own[key], rv)
}

// part records a write of one of app's revisions or trackers (kind/name).
func (w *written) part(app client.ObjectKey, kind, name, rv string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.parts[app] == nil {
		w.parts[app] = map[string]int64{}
	}
	w.parts[app][kind+"/"+name] = version(rv)
}

// partsBehind says whether the copies cached (versions by kind/name) miss one of app's
// revisions or trackers written, or hold it older than written.
func (w *written) partsBehind(app client.ObjectKey, cached map[string]string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, v := range w.parts[app] {
		rv, ok := cached[k]
		if !ok || version(rv) < v {
			return true
		}
	}
	return false
}

// partBehind is partsBehind for one revision or tracker (kind/name).
func (w *written) partBehind(app client.ObjectKey, name string, cached map[string]string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.parts[app][name]
	if !ok {
		return false
	}
	rv, ok := cached[name]
	return !ok || version(rv) < v
}

// forget drops what was remembered of an Application deleted.
func (w *written) forget(app client.ObjectKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.apps, app)
	delete(w.own, app)
	delete(w.parts, app)
}

// settle drops the remembered writes of app's revisions and trackers that the API server no
// longer holds (found missing in a read from it), so that their absence from the cache does
// not send every later read to the API server.
func (w *written) settle(app client.ObjectKey, stored map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.parts[app] {
		if _, ok := stored[k]; !ok {
			delete(w.parts[app], k)
		}
	}
}
