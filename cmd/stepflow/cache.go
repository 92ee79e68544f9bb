package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	crdstore "github.com/stepflow/stepflow/store/crd"
)

// cacheKeyWidth is how much of an entry's key `cache list` shows; `cache drop` takes any
// prefix that names one entry.
const cacheKeyWidth = 16

func newCacheCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List and drop the step cache's entries (steps with cache: {key, maxAge})",
	}
	cmd.AddCommand(newCacheListCommand(g), newCacheDropCommand(g))
	return cmd
}

// stepCache is the step cache a command works on: the embedded store's, a server's through
// its API (--server), or the cluster's ConfigMaps (--kube).
type stepCache interface {
	List(ctx context.Context, namespace string) ([]*engine.CacheEntry, error)
	Drop(ctx context.Context, namespace, key string) error
	DropAll(ctx context.Context, namespace string) (int, error)
}

// openCache opens the step cache of the mode the global flags name; done releases it.
func (g *globals) openCache(ctx context.Context) (c stepCache, done func(), err error) {
	if g.kube {
		c, err := g.kubeClient()
		if err != nil {
			return nil, nil, err
		}
		return &crdstore.StepCache{Client: c}, func() {}, nil
	}
	if r := g.remote(); r != nil {
		return remoteCache{r}, func() {}, nil
	}
	st, err := g.openSQLite(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &store.StepCache{Records: st}, func() { _ = st.Close() }, nil
}

func newCacheListCommand(g *globals) *cobra.Command {
	var all, quiet bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the step cache's entries of the namespace, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, done, err := g.openCache(ctx)
			if err != nil {
				return err
			}
			defer done()
			ns := g.namespace
			if all {
				ns = ""
			}
			entries, err := c.List(ctx, ns)
			if err != nil {
				return err
			}
			if quiet {
				for _, e := range entries {
					fmt.Fprintln(g.stdout, e.Key)
				}
				return nil
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAMESPACE\tKEY\tTYPE\tFROM\tCREATED\tOUTPUTS")
			for _, e := range entries {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s/%s\t%s\t%s\n", e.Namespace, e.Key[:min(len(e.Key), cacheKeyWidth)], e.StepType,
					e.Run, e.Step, e.Created.UTC().Format(time.RFC3339), strings.Join(slices.Sorted(maps.Keys(e.Outputs)), ","))
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "entries of every namespace")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only the entries' whole keys, one a line")
	return cmd
}

func newCacheDropCommand(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "drop KEY|--all",
		Short: "Drop a step cache entry of the namespace (by its key, or a prefix naming one entry), or all of them: the next step with the key runs",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return invalidf("cache drop: give an entry's KEY or --all")
			}
			ctx := cmd.Context()
			c, done, err := g.openCache(ctx)
			if err != nil {
				return err
			}
			defer done()
			if all {
				n, err := c.DropAll(ctx, g.namespace)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "dropped %d entries of namespace %s\n", n, g.namespace)
				return nil
			}
			entries, err := c.List(ctx, g.namespace)
			if err != nil {
				return err
			}
			var match []string
			for _, e := range entries {
				if strings.HasPrefix(e.Key, args[0]) {
					match = append(match, e.Key)
				}
			}
			switch len(match) {
			case 0:
				return invalidf("cache entry %s/%s not found", g.namespace, args[0])
			case 1:
			default:
				return invalidf("cache drop %s: %d entries of namespace %s start so; give more of the key", args[0], len(match), g.namespace)
			}
			if err := c.Drop(ctx, g.namespace, match[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "dropped %s/%s\n", g.namespace, match[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "drop every entry of the namespace")
	return cmd
}

// remoteCache is a server's step cache, through its API.
type remoteCache struct{ r *remote }

func (rc remoteCache) List(ctx context.Context, ns string) ([]*engine.CacheEntry, error) {
	path := "/api/v1/cache"
	if ns != "" {
		path += "?namespace=" + url.QueryEscape(ns)
	}
	var page struct {
		Items []*engine.CacheEntry `json:"items"`
	}
	if err := rc.r.call(ctx, "GET", path, "", nil, &page); err != nil {
		return nil, err
	}
	return page.Items, nil
}

func (rc remoteCache) Drop(ctx context.Context, ns, key string) error {
	return rc.r.call(ctx, "DELETE", "/api/v1/cache/"+url.PathEscape(ns)+"/"+url.PathEscape(key), "", nil, nil)
}

func (rc remoteCache) DropAll(ctx context.Context, ns string) (int, error) {
	var out struct {
		Dropped int `json:"dropped"`
	}
	err := rc.r.call(ctx, "DELETE", "/api/v1/cache/"+url.PathEscape(ns), "", nil, &out)
	return out.Dropped, err
}
