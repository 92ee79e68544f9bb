package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/assembly"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

// recordCluster is the record kind of the clusters stored through the API, keyed by name;
// the data is the cluster's kubeconfig.
const recordCluster = "cluster"

// clusters resolves the clusters steps name: the stored ones, then those the server was
// started with (the local one, a --clusters file).
type clusters struct {
	stored   *cluster.Registry
	fallback assembly.Clusters
}

func newClusters(st store.Records, fallback assembly.Clusters) *clusters {
	return &clusters{stored: cluster.New(nil, cluster.Options{Kubeconfigs: kubeconfigs{st}}), fallback: fallback}
}

// Client implements assembly.Clusters.
func (c *clusters) Client(ctx context.Context, name string) (client.Client, error) {
	return resolve(c, ctx, name, assembly.Clusters.Client)
}

// Config implements assembly.Clusters.
func (c *clusters) Config(ctx context.Context, name string) (*rest.Config, error) {
	return resolve(c, ctx, name, assembly.Clusters.Config)
}

// resolve gets what get gives of the named cluster from the stored clusters, else from the
// fallback.
func resolve[T any](c *clusters, ctx context.Context, name string, get func(assembly.Clusters, context.Context, string) (T, error)) (T, error) {
	if name != "" && name != cluster.LocalName {
		v, err := get(c.stored, ctx, name)
		var unknown *cluster.UnknownError
		if err == nil || !errors.As(err, &unknown) || c.fallback == nil {
			return v, err
		}
	}
	if c.fallback == nil {
		return get(c.stored, ctx, name)
	}
	return get(c.fallback, ctx, name)
}

// kubeconfigs reads the stored clusters' kubeconfigs.
type kubeconfigs struct{ st store.Records }

// Kubeconfig implements cluster.KubeconfigStore.
func (k kubeconfigs) Kubeconfig(ctx context.Context, name string) ([]byte, string, error) {
	rec, err := k.st.Record(ctx, recordCluster, name)
	if err != nil {
		return nil, "", err
	}
	return rec.Data, strconv.FormatInt(rec.Version, 10), nil
}

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request) error {
	recs, err := s.store.Records(r.Context(), recordCluster, "")
	if err != nil {
		return err
	}
	items := make([]map[string]string, 0, len(recs))
	for _, rec := range recs {
		items = append(items, map[string]string{"name": rec.Key})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (s *Server) putCluster(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name       string `json:"name"`
		Kubeconfig string `json:"kubeconfig"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.Name == "" || body.Name == cluster.LocalName {
		return errorf(http.StatusBadRequest, "name: a cluster needs a name other than %q", cluster.LocalName)
	}
	if _, err := clientcmd.RESTConfigFromKubeConfig([]byte(body.Kubeconfig)); err != nil {
		return errorf(http.StatusBadRequest, "kubeconfig: %v", err)
	}
	version := int64(0)
	if old, err := s.store.Record(r.Context(), recordCluster, body.Name); err == nil {
		version = old.Version
	} else if !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	if _, err := s.store.PutRecord(r.Context(), recordCluster, body.Name, []byte(body.Kubeconfig), version); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"name": body.Name})
	return nil
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) error {
	if err := s.store.DeleteRecord(r.Context(), recordCluster, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
