package multicluster_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

// requests counts the requests stepflow's clients send, by method.
type requests struct {
	mu     sync.Mutex
	counts map[string]int
}

func (r *requests) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		r.mu.Lock()
		r.counts[req.Method]++
		r.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// allDone counts the runs that finished, and those that succeeded.
type allDone struct {
	finished, succeeded atomic.Int64
	seen                sync.Map
	done                chan struct{}
	want                int64
}

func (a *allDone) RunChanged(run *engine.Run) {
	st := run.Object.Status
	if !st.Finished {
		return
	}
	if _, dup := a.seen.LoadOrStore(run.Object.Name, true); dup {
		return
	}
	if st.Phase == v1alpha1.RunSucceeded {
		a.succeeded.Add(1)
	}
	if a.finished.Add(1) == a.want {
		close(a.done)
	}
}

// BenchmarkDeliver100Apps delivers 100 Applications, each a webservice with scaler and gateway
// traits under a topology of two clusters, through the embedded engine on two real API
// servers, the Deployments made ready and the Ingresses given an address as soon as the
// readiness stand-in sees them (it polls every 50 ms); it reports the time until every run
// succeeded and stepflow's API requests per Application.
func BenchmarkDeliver100Apps(b *testing.B) {
	const apps = 100
	for range b.N {
		b.StopTimer()
		w := newWorldWith(b, 0)
		counted := &requests{counts: map[string]int{}}
		registry := cluster.New(eu.Config, cluster.Options{File: w.file, QPS: 1000, Burst: 2000, WrapTransport: counted.wrap})
		ctx := context.Background()
		st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(b.TempDir(), "stepflow.db")})
		if err != nil {
			b.Fatal(err)
		}
		done := &allDone{done: make(chan struct{}), want: apps}
		a, err := assembly.New(assembly.Config{Providers: assembly.Providers{Clusters: registry}},
			assembly.Mode{Store: st, Definitions: st, Observers: []engine.Observer{done}})
		if err != nil {
			b.Fatal(err)
		}
		var keys []engine.Key
		for i := range apps {
			app := &v1beta1.Application{}
			y := strings.ReplaceAll(shop, "frontend", fmt.Sprintf("web-%d", i))
			y = strings.Replace(y, "name: shop", fmt.Sprintf("name: shop-%d", i), 1)
			if err := yaml.UnmarshalStrict([]byte(y), app); err != nil {
				b.Fatal(err)
			}
			app.Namespace = w.ns
			spec, err := application.RunSpec(app, app.Name+"-v1", nil)
			if err != nil {
				b.Fatal(err)
			}
			wr := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Name: app.Name, Namespace: w.ns}, Spec: spec}
			if err := st.Create(ctx, &engine.Run{Object: wr}, store.CreateNew); err != nil {
				b.Fatal(err)
			}
			keys = append(keys, engine.Key{Namespace: w.ns, Name: app.Name})
		}
		ectx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() { _ = a.Engine.Start(ectx); close(stopped) }()
		b.StartTimer()
		began := time.Now()
		for _, k := range keys {
			a.Engine.Enqueue(k)
		}
		select {
		case <-done.done:
		case <-time.After(3 * time.Minute):
			b.Fatalf("%d of %d runs finished in 3 minutes", done.finished.Load(), apps)
		}
		took := time.Since(began)
		b.StopTimer()
		cancel()
		<-stopped
		_ = st.Close()
		if n := done.succeeded.Load(); n != apps {
			b.Fatalf("%d of %d runs succeeded", n, apps)
		}
		total := 0
		var by []string
		for m, n := range counted.counts {
			total += n
			by = append(by, fmt.Sprintf("%s %.1f", m, float64(n)/apps))
		}
		sort.Strings(by)
		b.ReportMetric(took.Seconds(), "s/100apps")
		b.ReportMetric(float64(total)/apps, "requests/app")
		b.Logf("100 Applications delivered to two clusters in %s; requests per Application: %.1f (%s)", took.Round(10*time.Millisecond), float64(total)/apps, strings.Join(by, ", "))
		b.StartTimer()
	}
}
