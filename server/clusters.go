package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// recordCluster is the record kind of the clusters stored through the API, keyed by name;
// the data is a storedCluster.
const recordCluster = "cluster"

// storedCluster is a cluster stored through the API: its kubeconfig, and the namespaces whose
// runs may use it and whose admins may change it; none means every namespace (and only an
// admin of every namespace may change it).
type storedCluster struct {
	Kubeconfig string   `json:"kubeconfig"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// decodeCluster reads a cluster record: a storedCluster's JSON or, as clusters were stored
// before they had namespaces, the kubeconfig itself, for every namespace.
func decodeCluster(data []byte) storedCluster {
	var c storedCluster
	if json.Unmarshal(data, &c) == nil && c.Kubeconfig != "" {
		return c
	}
	return storedCluster{Kubeconfig: string(data)}
}

// usableBy reports whether the runs of namespace may use the cluster.
func (c storedCluster) usableBy(namespace string) bool {
	return len(c.Namespaces) == 0 || slices.Contains(c.Namespaces, namespace)
}

// clusters resolves the clusters steps name: the stored ones, each for the runs of its
// namespaces, then those the server was started with (the local one, a --clusters file), for
// every namespace.
type clusters struct {
	st       store.Records
	stored   *cluster.Registry
	fallback assembly.Clusters
}

func newClusters(st store.Records, fallback assembly.Clusters, allowHostAccess bool) *clusters {
	kcs := kubeconfigs{st: st, allowHostAccess: allowHostAccess}
	return &clusters{st: st, stored: cluster.New(nil, cluster.Options{Kubeconfigs: kcs}), fallback: fallback}
}

// Client implements assembly.Clusters: the client of a cluster that every namespace may use.
func (c *clusters) Client(ctx context.Context, name string) (client.Client, error) {
	return c.ClientIn(ctx, "", name)
}

// ClientIn implements kube.NamespacedClusters: a stored cluster is for the runs of its
// namespaces only.
func (c *clusters) ClientIn(ctx context.Context, namespace, name string) (client.Client, error) {
	return resolve(ctx, c, namespace, name, assembly.Clusters.Client)
}

// Config implements assembly.Clusters: the REST config of a cluster that every namespace may
// use (a cluster stored for some namespaces only is refused).
func (c *clusters) Config(ctx context.Context, name string) (*rest.Config, error) {
	return resolve(ctx, c, "", name, assembly.Clusters.Config)
}

// ConfigIn implements util.NamespacedClusters: Config for a run in namespace.
func (c *clusters) ConfigIn(ctx context.Context, namespace, name string) (*rest.Config, error) {
	return resolve(ctx, c, namespace, name, assembly.Clusters.Config)
}

// ServerVersion is the Kubernetes version of a cluster that every namespace may use, read
// once per cluster (cluster.Registry.ServerVersion); the vela/oam renders give it as
// context.clusterVersion.
func (c *clusters) ServerVersion(ctx context.Context, name string) (*version.Info, error) {
	return resolve(ctx, c, "", name, func(cl assembly.Clusters, ctx context.Context, name string) (*version.Info, error) {
		v, ok := cl.(interface {
			ServerVersion(ctx context.Context, name string) (*version.Info, error)
		})
		if !ok {
			return nil, fmt.Errorf("cluster %q: its version cannot be read", name)
		}
		return v.ServerVersion(ctx, name)
	})
}

// resolve gets what get gives of the named cluster for the runs of namespace: from the stored
// clusters when one is stored under that name and namespace may use it, else from the fallback.
func resolve[T any](ctx context.Context, c *clusters, namespace, name string, get func(assembly.Clusters, context.Context, string) (T, error)) (T, error) {
	var zero T
	if name != "" && name != cluster.LocalName {
		rec, err := c.st.Record(ctx, recordCluster, name)
		switch {
		case err == nil:
			if !decodeCluster(rec.Data).usableBy(namespace) {
				return zero, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("cluster %q is not for the runs of namespace %q (an admin stores a cluster for namespaces: POST /api/v1/clusters, field namespaces)", name, namespace))
			}
			return get(c.stored, ctx, name)
		case !errors.Is(err, engine.ErrNotFound):
			return zero, fmt.Errorf("cluster %q: %w", name, err)
		}
	}
	if c.fallback == nil {
		return get(c.stored, ctx, name)
	}
	return get(c.fallback, ctx, name)
}

// kubeconfigs reads the stored clusters' kubeconfigs; unless allowHostAccess, one that would
// run a command or read a file on the server (stored before the API refused them) is refused.
type kubeconfigs struct {
	st              store.Records
	allowHostAccess bool
}

// Kubeconfig implements cluster.KubeconfigStore.
func (k kubeconfigs) Kubeconfig(ctx context.Context, name string) ([]byte, string, error) {
	rec, err := k.st.Record(ctx, recordCluster, name)
	if err != nil {
		return nil, "", err
	}
	kc := []byte(decodeCluster(rec.Data).Kubeconfig)
	if !k.allowHostAccess {
		if fields, err := cluster.HostAccess(kc); err == nil && len(fields) > 0 {
			return nil, "", engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("cluster %q: %s", name, hostAccessMessage(fields)))
		}
	}
	return kc, strconv.FormatInt(rec.Version, 10), nil
}

// hostAccessMessage says why a kubeconfig asking for fields is refused.
func hostAccessMessage(fields []string) string {
	return fmt.Sprintf("the kubeconfig would run a command or read a file on the server's host (%s); the server allows that only with --allow-kubeconfig-exec", strings.Join(fields, ", "))
}

// clusterView is a stored cluster in a list: the namespaces shown are those the caller sees.
type clusterView struct {
	Name       string   `json:"name"`
	Namespaces []string `json:"namespaces,omitempty"`
}

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request) error {
	recs, err := s.store.Records(r.Context(), recordCluster, "")
	if err != nil {
		return err
	}
	id := identityOf(r.Context())
	items := []clusterView{}
	for _, rec := range recs {
		c := decodeCluster(rec.Data)
		if id.seesAny(c.Namespaces) {
			items = append(items, clusterView{Name: rec.Key, Namespaces: id.visible(c.Namespaces)})
		}
	}
	writeJSON(w, http.StatusOK, listOf[clusterView]{Items: items})
	return nil
}

func (s *Server) putCluster(w http.ResponseWriter, r *http.Request) error {
	var body clusterRequest
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.Name == "" || body.Name == cluster.LocalName {
		return errorf(http.StatusBadRequest, "name: a cluster needs a name other than %q", cluster.LocalName)
	}
	if err := checkNamespaces(body.Namespaces); err != nil {
		return err
	}
	id := identityOf(r.Context())
	if !id.within(body.Namespaces) {
		return errorf(http.StatusForbidden, "namespaces: the token is limited to namespaces %v: a cluster it stores must be for some of them only", id.Namespaces)
	}
	// Checked before the kubeconfig is read into a config, which reads the files it names.
	if fields, err := cluster.HostAccess([]byte(body.Kubeconfig)); err != nil {
		return errorf(http.StatusBadRequest, "kubeconfig: %v", err)
	} else if len(fields) > 0 && !s.opts.AllowKubeconfigExec {
		e := errorf(http.StatusBadRequest, "kubeconfig: %s", hostAccessMessage(fields))
		for _, f := range fields {
			e.problems = append(e.problems, problem{Field: "kubeconfig." + f, Message: "refused: it runs a command or reads a file on the server's host"})
		}
		return e
	}
	if _, err := clientcmd.RESTConfigFromKubeConfig([]byte(body.Kubeconfig)); err != nil {
		return errorf(http.StatusBadRequest, "kubeconfig: %v", err)
	}
	version := int64(0)
	if old, err := s.store.Record(r.Context(), recordCluster, body.Name); err == nil {
		if !id.within(decodeCluster(old.Data).Namespaces) {
			return errorf(http.StatusForbidden, "cluster %q exists and is for namespaces the token may not write", body.Name)
		}
		version = old.Version
	} else if !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	data, err := json.Marshal(storedCluster{Kubeconfig: body.Kubeconfig, Namespaces: body.Namespaces})
	if err != nil {
		return err
	}
	if _, err := s.store.PutRecord(r.Context(), recordCluster, body.Name, data, version); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, clusterView{Name: body.Name, Namespaces: body.Namespaces})
	return nil
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	rec, err := s.store.Record(r.Context(), recordCluster, name)
	if err != nil {
		return err
	}
	id := identityOf(r.Context())
	c := decodeCluster(rec.Data)
	if !id.seesAny(c.Namespaces) {
		return errorf(http.StatusNotFound, "cluster %q: not found", name)
	}
	if !id.within(c.Namespaces) {
		return errorf(http.StatusForbidden, "cluster %q is also for namespaces the token may not write", name)
	}
	if err := s.store.DeleteRecord(r.Context(), recordCluster, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkNamespaces answers 400 for a list of namespaces with one that is not a namespace's name.
func checkNamespaces(namespaces []string) error {
	for i, ns := range namespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			return errorf(http.StatusBadRequest, "namespaces[%d]: %q is not a namespace: %s", i, ns, strings.Join(msgs, "; "))
		}
	}
	return nil
}
