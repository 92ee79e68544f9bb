package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	crdstore "github.com/stepflow/stepflow/store/crd"
)

func newTemplateCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template",
		Short: "The revisions of Workflow templates: history, diff, rollback (the embedded store's, a server's with --server, the cluster's with --kube)",
	}
	cmd.AddCommand(newTemplateHistoryCommand(g), newTemplateDiffCommand(g), newTemplateRollbackCommand(g))
	return cmd
}

// templateRevisions are the kept revisions of templates a command works on: the embedded
// store's, a server's (--server) or the cluster's (--kube: the controller's ControllerRevisions).
type templateRevisions interface {
	WorkflowRevisions(ctx context.Context, namespace, name string) ([]store.WorkflowRevision, error)
	WorkflowRevision(ctx context.Context, namespace, name string, rev int64) (*store.WorkflowRevision, error)
	// rollback stores revision rev's content as the newest and returns the template as stored.
	rollback(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error)
}

// openRevisions opens the revisions of the mode the global flags name; done releases them.
func (g *globals) openRevisions(ctx context.Context) (templateRevisions, func(), error) {
	if g.kube {
		c, err := g.kubeClient()
		if err != nil {
			return nil, nil, err
		}
		return kubeRevisions{Revisions: &crdstore.Revisions{Client: c}, c: c}, func() {}, nil
	}
	if r := g.remote(); r != nil {
		return remoteRevisions{r}, func() {}, nil
	}
	st, err := g.openSQLite(ctx)
	if err != nil {
		return nil, nil, err
	}
	return localRevisions{st}, func() { _ = st.Close() }, nil
}

// localRevisions are the embedded store's.
type localRevisions struct{ store.Store }

func (l localRevisions) rollback(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	return store.Rollback(ctx, l.Store, namespace, name, rev)
}

// kubeRevisions are the cluster's: the ControllerRevisions the controller keeps of Workflows.
type kubeRevisions struct {
	*crdstore.Revisions
	c client.Client
}

// rollback updates the Workflow to the content of revision rev, its metadata left as it is;
// the API server makes that a new generation, which the controller keeps as a revision, unless
// the content is the current one.
func (k kubeRevisions) rollback(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	r, err := k.WorkflowRevision(ctx, namespace, name, rev)
	if err != nil {
		return nil, fmt.Errorf("roll back Workflow %s/%s: %w", namespace, name, err)
	}
	var cur v1alpha1.Workflow
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &cur); err != nil {
		return nil, fmt.Errorf("roll back Workflow %s/%s: %w", namespace, name, err)
	}
	wf := r.Workflow.DeepCopy()
	wf.ObjectMeta = cur.ObjectMeta // the resourceVersion read: a change made since is not overwritten
	if err := k.c.Update(ctx, wf); err != nil {
		return nil, fmt.Errorf("roll back Workflow %s/%s to revision %d: %w", namespace, name, rev, err)
	}
	return wf, nil
}

// remoteRevisions are a server's, through its API.
type remoteRevisions struct{ r *remote }

func templatePath(namespace, name string) string {
	return "/api/v1/templates/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
}

func (rr remoteRevisions) WorkflowRevisions(ctx context.Context, namespace, name string) ([]store.WorkflowRevision, error) {
	var page struct {
		Items []store.WorkflowRevision `json:"items"`
	}
	err := rr.r.call(ctx, "GET", templatePath(namespace, name)+"/revisions", "", nil, &page)
	return page.Items, err
}

func (rr remoteRevisions) WorkflowRevision(ctx context.Context, namespace, name string, rev int64) (*store.WorkflowRevision, error) {
	out := new(store.WorkflowRevision)
	if err := rr.r.call(ctx, "GET", templatePath(namespace, name)+"/revisions/"+strconv.FormatInt(rev, 10), "", nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (rr remoteRevisions) rollback(ctx context.Context, namespace, name string, rev int64) (*v1alpha1.Workflow, error) {
	body := fmt.Appendf(nil, `{"revision": %d}`, rev)
	wf := new(v1alpha1.Workflow)
	if err := rr.r.call(ctx, "POST", templatePath(namespace, name)+"/rollback", "application/json", body, wf); err != nil {
		return nil, err
	}
	return wf, nil
}

// revisionArg is a revision number given on the command line.
func revisionArg(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, invalidf("%q is not a revision number (1 or more)", s)
	}
	return n, nil
}

// notFoundInvalid makes a look-up of what is not kept a usage error (exit 2).
func notFoundInvalid(err error) error {
	if errors.Is(err, engine.ErrNotFound) {
		return invalidErr(err)
	}
	return err
}

func newTemplateHistoryCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history NAME",
		Short: "List the kept revisions of a Workflow template of the namespace, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			revs, done, err := g.openRevisions(ctx)
			if err != nil {
				return err
			}
			defer done()
			list, err := revs.WorkflowRevisions(ctx, g.namespace, args[0])
			if err != nil {
				return notFoundInvalid(err)
			}
			if len(list) == 0 {
				return invalidf("template %s/%s: no revisions kept", g.namespace, args[0])
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "REVISION\tCREATED\tHASH")
			for _, r := range list {
				created := "-"
				if !r.Created.IsZero() {
					created = r.Created.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%d\t%s\t%s\n", r.Revision, created, r.Hash[:min(len(r.Hash), 12)])
			}
			return w.Flush()
		},
	}
}

func newTemplateDiffCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff NAME R1 [R2]",
		Short: "Print the unified diff of the YAML of revision R1 of a template to R2 (the newest by default)",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := revisionArg(args[1])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			revs, done, err := g.openRevisions(ctx)
			if err != nil {
				return err
			}
			defer done()
			var to int64
			if len(args) == 3 {
				if to, err = revisionArg(args[2]); err != nil {
					return err
				}
			} else {
				list, err := revs.WorkflowRevisions(ctx, g.namespace, args[0])
				if err != nil {
					return notFoundInvalid(err)
				}
				if len(list) == 0 {
					return invalidf("template %s/%s: no revisions kept", g.namespace, args[0])
				}
				to = list[0].Revision
			}
			a, err := revs.WorkflowRevision(ctx, g.namespace, args[0], from)
			if err != nil {
				return notFoundInvalid(err)
			}
			b, err := revs.WorkflowRevision(ctx, g.namespace, args[0], to)
			if err != nil {
				return notFoundInvalid(err)
			}
			d, err := store.DiffRevisions(a, b)
			if err != nil {
				return err
			}
			fmt.Fprint(g.stdout, d)
			return nil
		},
	}
}

func newTemplateRollbackCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rollback NAME N",
		Short: "Store revision N's content as the template's newest revision",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			rev, err := revisionArg(args[1])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			revs, done, err := g.openRevisions(ctx)
			if err != nil {
				return err
			}
			defer done()
			wf, err := revs.rollback(ctx, g.namespace, args[0], rev)
			if err != nil {
				return notFoundInvalid(err)
			}
			fmt.Fprintf(g.stdout, "template %s/%s: revision %d, the content of revision %d\n", g.namespace, args[0], wf.Generation, rev)
			return nil
		},
	}
}
