package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
	"github.com/stepflow/stepflow/store/sqlite"
)

func newRunCommand(g *globals) *cobra.Command {
	var sets []string
	var replace bool
	cmd := &cobra.Command{
		Use:   "run FILE...",
		Short: "Run the WorkflowRuns in the files to their end",
		Long: `Run reads WorkflowRuns, Workflows and WorkflowStepDefinitions from the files
(multi-document YAML), checks them, stores them, and runs each WorkflowRun to its end,
showing its steps as they move. The definitions and Workflows are kept for later runs.

A run whose name is already stored is replaced if it has finished; an unfinished one is
refused unless --replace is given.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			ctx := cmd.Context()
			if r := g.remote(); r != nil {
				setCtx, err := parseSets(sets)
				if err != nil {
					return err
				}
				return g.remoteRunFiles(ctx, r, files, setCtx)
			}
			setCtx, err := parseSets(sets)
			if err != nil {
				return err
			}
			a, objs, err := g.load(ctx, files, setCtx)
			if err != nil {
				return err
			}
			g.sweep(ctx, a)
			if len(objs.Runs) == 0 {
				return invalidf("%s: no WorkflowRun to run (use stepflow apply to store definitions and Workflows)", strings.Join(files, ", "))
			}
			if err := refuseDelivery("run", objs); err != nil {
				return err
			}
			var keys []engine.Key
			runs := make([]*engine.Run, 0, len(objs.Runs))
			for _, obj := range objs.Runs {
				obj.Status = v1alpha1.WorkflowRunStatus{}
				runs = append(runs, &engine.Run{Object: obj, Checked: true}) // g.load checked them
				keys = append(keys, engine.Key{Namespace: obj.Namespace, Name: obj.Name})
			}
			if err := a.store.PutObjects(ctx, objs.Definitions, objs.Workflows); err != nil {
				return fmt.Errorf("store definitions and workflows: %w", err)
			}
			if err := store.PutPackages(ctx, a.store, objs.Packages); err != nil {
				return fmt.Errorf("store packages: %w", err)
			}
			for _, r := range runs {
				if err := a.createRun(ctx, r, replace); err != nil {
					return err
				}
			}
			d := a.newDriver()
			d.start()
			defer d.stop()
			g.code = d.drive(ctx, g, keys)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "key=value added to spec.context of every run (value parsed as YAML; dotted keys nest)")
	cmd.Flags().BoolVar(&replace, "replace", false, "replace a stored run of the same name even if it has not finished")
	return cmd
}

// createRun stores a new run, replacing a finished (or never started) one of the same name
// at the version found here, so that a run another process started meanwhile stays; with
// replace, whatever is stored.
func (a *app) createRun(ctx context.Context, r *engine.Run, replace bool) error {
	key := r.Key()
	replaces := store.ReplaceAny
	if !replace {
		replaces = store.CreateNew
		old, err := a.store.Load(ctx, key)
		switch {
		case err == nil && !old.Object.Status.Finished && old.Object.Status.Phase != "":
			return invalidf("run %s already exists and is %s: resume, restart or terminate it, or run with --replace",
				key, old.Object.Status.Phase)
		case err == nil:
			replaces = old.Version
		case !errors.Is(err, engine.ErrNotFound):
			return err
		}
	}
	err := a.store.Create(ctx, r, replaces)
	if errors.Is(err, engine.ErrConflict) || errors.Is(err, store.ErrExists) {
		return invalidf("run %s was created by another process meanwhile: run again, or with --replace", key)
	}
	if err != nil {
		return fmt.Errorf("store run %s: %w", key, err)
	}
	return nil
}

// parseSets turns --set key=value flags into a context object.
func parseSets(sets []string) (map[string]any, error) {
	out := map[string]any{}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, invalidf("--set %q: want key=value", s)
		}
		var val any
		if err := yaml.Unmarshal([]byte(v), &val); err != nil || val == nil {
			val = v
		}
		v1alpha1.SetDottedPath(out, k, val)
	}
	return out, nil
}

// mergeContext adds the --set values to a run's spec.context; they win over the file's.
func mergeContext(obj *v1alpha1.WorkflowRun, set map[string]any) error {
	if len(set) == 0 {
		return nil
	}
	ctx := map[string]any{}
	if obj.Spec.Context != nil && len(obj.Spec.Context.Raw) > 0 {
		if err := json.Unmarshal(obj.Spec.Context.Raw, &ctx); err != nil {
			return invalidf("run %s: spec.context: %v", obj.Name, err)
		}
	}
	deepMerge(ctx, set)
	raw, err := json.Marshal(ctx)
	if err != nil {
		return invalidf("run %s: --set: %v", obj.Name, err)
	}
	obj.Spec.Context = &runtime.RawExtension{Raw: raw}
	return nil
}

func deepMerge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				deepMerge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// driver runs an engine in this process and follows the runs it advances. It drives the runs
// whose leases it takes; a run another process drives it follows in the store until it can
// take it (that process ended) or the run has settled.
type driver struct {
	app      *app
	eng      *engine.Engine
	watch    *watcher
	cancel   context.CancelFunc
	stopped  chan struct{}
	followed map[engine.Key]sqlite.Holder // the runs another process drives, by who drives them
}

// newDriver drives the app's engine, whose transitions feed the progress display, once started.
func (a *app) newDriver() *driver {
	return &driver{app: a, eng: a.Engine, watch: a.watch, followed: map[engine.Key]sqlite.Holder{}}
}

// newWatcher follows runs onto this command's output.
func newWatcher(g *globals) *watcher {
	p := newProgress(g.stdout, false)
	if f, ok := g.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		p.width = func() int {
			w, _, err := term.GetSize(int(f.Fd()))
			if err != nil {
				return 0
			}
			return w
		}
	}
	return &watcher{progress: p, last: map[engine.Key]*runView{}, changed: make(chan struct{}, 1)}
}

// start runs the engine's workers, and renews the leases of the runs they drive, until stop.
func (d *driver) start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.stopped = cancel, make(chan struct{})
	kept := make(chan struct{})
	go func() {
		// A lease another process took while this one stalled: what the engine holds of that
		// run is dropped at once, its evaluations cancelled.
		d.app.leases.Keep(ctx, func([]engine.Key) { d.eng.DropUnowned() })
		close(kept)
	}()
	go func() { _ = d.eng.Start(ctx); <-kept; close(d.stopped) }()
}

// stop ends the workers, waits for the evaluations under way and gives up the runs' leases.
func (d *driver) stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.stopped
		_ = d.app.leases.Release(context.Background())
	}
}

// drive runs the engine until every run in keys has settled, and returns the exit code they
// call for: the worst of them.
func (d *driver) drive(ctx context.Context, g *globals, keys []engine.Key) int {
	for _, k := range keys {
		d.take(ctx, g, k)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	polls := 0
	for {
		code, settled := d.watch.verdict(keys, d.eng)
		if settled {
			d.watch.progress.Tick()
			return code
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(g.stderr, "interrupted: the runs stay where they are; continue them with `stepflow resume NAME` or `stepflow recover`\n")
			return exitFailed
		case <-d.watch.changed:
		case <-tick.C:
			d.watch.progress.Tick()
			polls++
			if polls%5 == 0 {
				d.pickUpOutsideChanges(ctx, g, keys)
			}
		}
	}
}

// take claims a run's lease and has the engine drive it; when another process drives it, it
// follows the run in the store instead, saying once who drives it.
func (d *driver) take(ctx context.Context, g *globals, k engine.Key) {
	holder, ok, err := d.app.leases.Claim(ctx, k)
	if err == nil && ok {
		if was, followed := d.followed[k]; followed {
			fmt.Fprintf(g.stdout, "run %s: %s no longer drives it; driving it here\n", k.Name, was)
			delete(d.followed, k)
		}
		d.eng.Enqueue(k)
		return
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "stepflow: %v (following the run meanwhile)\n", err)
	} else if was, followed := d.followed[k]; !followed || was != holder {
		fmt.Fprintf(g.stdout, "run %s is driven by %s; following it\n", k.Name, holder)
	}
	d.followed[k] = holder
	d.follow(ctx, k)
}

// follow shows the stored run when it is newer than what was shown, and reports it.
func (d *driver) follow(ctx context.Context, k engine.Key) (*engine.Run, bool) {
	run, err := d.app.store.Load(ctx, k)
	if err != nil {
		return nil, false
	}
	if last := d.watch.view(k); last == nil || run.Version > last.version {
		d.watch.RunChanged(run)
	}
	return run, true
}

// pickUpOutsideChanges has the engine re-read runs that another process changed (a suspend or
// terminate from a second terminal), follows those another process drives, and takes them up
// once it no longer does.
func (d *driver) pickUpOutsideChanges(ctx context.Context, g *globals, keys []engine.Key) {
	for _, k := range keys {
		if _, followed := d.followed[k]; followed || !d.app.leases.Owns(k) { //nolint:contextcheck // engine.Owner answers without a context: a claim it makes has a bound of its own
			if run, ok := d.follow(ctx, k); ok && !engine.Settled(run) {
				d.take(ctx, g, k)
			}
			continue
		}
		run, err := d.app.store.Load(ctx, k)
		if err != nil {
			continue
		}
		if last := d.watch.view(k); last != nil && run.Version > last.version {
			d.eng.Enqueue(k)
		}
	}
}

// watcher follows the runs a command drives: it feeds the progress display and tells the
// command when something changed.
type watcher struct {
	progress *progress
	mu       sync.Mutex
	last     map[engine.Key]*runView
	changed  chan struct{}
}

type runView struct {
	phase   v1alpha1.WorkflowRunPhase
	settled bool
	version int64
}

func (w *watcher) RunChanged(run *engine.Run) { w.update(run, engine.Settled(run)) }

// update shows a run, settled or not.
func (w *watcher) update(run *engine.Run, settled bool) {
	w.mu.Lock()
	// Reports come from Operate and from the workers, each from its own goroutine, so one can
	// arrive after a later one: an older version than the one shown is dropped.
	if last := w.last[run.Key()]; last != nil && last.version > run.Version {
		w.mu.Unlock()
		return
	}
	w.last[run.Key()] = &runView{phase: run.Object.Status.Phase, settled: settled, version: run.Version}
	w.mu.Unlock()
	w.progress.RunChanged(run)
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *watcher) view(k engine.Key) *runView {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last[k]
}

// verdict reports whether every run has settled and, if so, the exit code they call for.
func (w *watcher) verdict(keys []engine.Key, eng *engine.Engine) (int, bool) {
	code := exitOK
	for _, k := range keys {
		v := w.view(k)
		if v == nil || !v.settled || (eng != nil && eng.Busy(k)) {
			return 0, false
		}
		c := exitOK
		switch v.phase {
		case v1alpha1.RunSucceeded:
		case v1alpha1.RunSuspending:
			c = exitSuspended
		default:
			c = exitFailed
		}
		if c == exitFailed || (c == exitSuspended && code == exitOK) {
			code = c
		}
	}
	return code, true
}

// operate applies an operation to a stored run (here, through the server, or to a WorkflowRun in
// the cluster) and, when drive is set and the run can go on, drives or follows it to its end.
func (g *globals) operate(ctx context.Context, name string, op engine.Operation, drive bool) error {
	if op.By == "" {
		op.By = localUser()
	}
	if g.kube {
		return g.kubeOperate(ctx, name, op)
	}
	if r := g.remote(); r != nil {
		return g.remoteOperate(ctx, r, name, op, drive)
	}
	a, err := g.open(ctx)
	if err != nil {
		return err
	}
	key := engine.Key{Namespace: g.namespace, Name: name}
	d := a.newDriver()
	if drive {
		d.start()      //nolint:contextcheck // the engine runs until stop, whatever the command's context does
		defer d.stop() //nolint:contextcheck // as start
	}
	if _, err := d.eng.Operate(ctx, key, op); err != nil {
		return operationErr(key, err)
	}
	if !drive {
		fmt.Fprintf(g.stdout, "%s: done\n", key.Name)
		return nil
	}
	g.code = asked(op, d.drive(ctx, g, []engine.Key{key}))
	return nil
}

// asked is the exit code of an operation whose run was followed to an end with code: a run
// terminated by a terminate ended as asked (0), not failed.
func asked(op engine.Operation, code int) int {
	if op.Kind == engine.OpTerminate && code == exitFailed {
		return 0
	}
	return code
}

// operationErr gives an operation's failure its exit code: a run not found or an operation that
// does not apply is the user's input.
func operationErr(key engine.Key, err error) error {
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return invalidf("run %s not found", key)
	case errors.Is(err, engine.ErrInvalidOperation):
		return invalidErr(err)
	}
	return err
}

// localUser names who runs this command, for the operations it sends: the login name, or "".
func localUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
