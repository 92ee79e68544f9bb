package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/manifest"
	"github.com/stepflow/stepflow/store"
)

// remote is the API of a `stepflow server`, for the commands given --server.
type remote struct {
	base  string
	token string
	http  *http.Client
}

// remote returns the server the commands talk to, or nil when they work on the local store.
func (g *globals) remote() *remote {
	if g.server == "" {
		return nil
	}
	return &remote{base: strings.TrimSuffix(g.server, "/"), token: g.token, http: &http.Client{}}
}

// remoteError is an error answer of the server.
type remoteError struct {
	Status   int
	Message  string
	Problems []struct {
		Field   string `json:"field"`
		Line    int    `json:"line"`
		Column  int    `json:"column"`
		Message string `json:"message"`
	}
}

func (e *remoteError) Error() string {
	if len(e.Problems) == 0 {
		return e.Message
	}
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if p.Line > 0 {
			fmt.Fprintf(&b, "%d:%d: ", p.Line, p.Column)
		}
		if p.Field != "" {
			b.WriteString(p.Field + ": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// call sends a request and decodes a JSON answer into out (when not nil). An error answer
// becomes an exitError: 4xx invalid input (2), anything else internal (4).
func (r *remote) call(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, bytes.NewReader(body))
	if err != nil {
		return invalidf("--server %s: %v", r.base, err)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return &exitError{code: exitInternal, err: fmt.Errorf("server %s: %w", r.base, err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return &exitError{code: exitInternal, err: fmt.Errorf("server %s: %w", r.base, err)}
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error remoteError `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error.Message == "" {
			e.Error.Message = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		e.Error.Status = resp.StatusCode
		code := exitInternal
		if resp.StatusCode < 500 {
			code = exitInvalid
		}
		return &exitError{code: code, err: &e.Error}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("server %s: %s %s: %w", r.base, method, path, err)
		}
	}
	return nil
}

// remoteRun is a run as the API returns it.
type remoteRun struct {
	v1alpha1.WorkflowRun
	Stepflow struct {
		Version int64                      `json:"version"`
		Settled bool                       `json:"settled"`
		Steps   []v1alpha1.WorkflowStep    `json:"steps"`
		Outputs map[string]json.RawMessage `json:"outputs"`
	} `json:"stepflow"`
}

func (rr *remoteRun) engineRun() *engine.Run {
	run := &engine.Run{Object: &rr.WorkflowRun, Vars: rr.Stepflow.Outputs, Version: rr.Stepflow.Version}
	if rr.Stepflow.Steps != nil {
		run.Spec = &v1alpha1.WorkflowSpec{Steps: rr.Stepflow.Steps}
	}
	return run
}

func runPath(namespace, name string) string {
	return "/api/v1/runs/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
}

// remoteApply stores the definitions and templates of the files on the server.
func (g *globals) remoteApply(ctx context.Context, r *remote, objs *manifest.Objects) error {
	// Packages first: the server checks a definition against the Packages it imports.
	for _, p := range objs.Packages {
		p.APIVersion, p.Kind = cuev1alpha1.GroupVersion.String(), cuev1alpha1.KindPackage
		body, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if err := r.call(ctx, "PUT", "/api/v1/packages/"+url.PathEscape(p.Namespace)+"/"+url.PathEscape(p.Name), "application/json", body, nil); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "package %s/%s stored\n", p.Namespace, p.Name)
	}
	for _, d := range objs.Definitions {
		body, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if err := r.call(ctx, "PUT", "/api/v1/definitions/"+url.PathEscape(d.Namespace)+"/"+url.PathEscape(d.Name), "application/json", body, nil); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "workflowstepdefinition %s/%s stored\n", d.Namespace, d.Name)
	}
	for _, wf := range objs.Workflows {
		body, err := json.Marshal(wf)
		if err != nil {
			return err
		}
		if err := r.call(ctx, "PUT", "/api/v1/templates/"+url.PathEscape(wf.Namespace)+"/"+url.PathEscape(wf.Name), "application/json", body, nil); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "workflow %s/%s stored\n", wf.Namespace, wf.Name)
	}
	return nil
}

// remoteVet has the server check each file, and reports the problems at the file's name.
func (g *globals) remoteVet(ctx context.Context, r *remote, files []string) error {
	var problems []string
	for _, f := range g.paths(files) {
		data, err := os.ReadFile(f)
		if err != nil {
			return invalidf("%v", err)
		}
		err = r.call(ctx, "POST", "/api/v1/validate", "application/yaml", data, nil)
		if err == nil {
			continue
		}
		re, ok := asRemoteError(err)
		if !ok || re.Status != http.StatusBadRequest {
			return err
		}
		for line := range strings.SplitSeq(re.Error(), "\n") {
			problems = append(problems, f+":"+line)
		}
	}
	if len(problems) > 0 {
		return invalidf("%s", strings.Join(problems, "\n"))
	}
	fmt.Fprintf(g.stdout, "ok: %d file(s)\n", len(files))
	return nil
}

func asRemoteError(err error) (*remoteError, bool) {
	return errors.AsType[*remoteError](err)
}

// remoteRunFiles stores the files' definitions and templates on the server, creates their
// runs, and follows them to their end.
func (g *globals) remoteRunFiles(ctx context.Context, r *remote, files []string, set map[string]any) error {
	objs, err := manifest.DecodeFiles(g.paths(files)...)
	if err != nil {
		return invalidErr(err)
	}
	if len(objs.Runs) == 0 {
		return invalidf("%s: no WorkflowRun to run", strings.Join(files, ", "))
	}
	if err := g.remoteApply(ctx, r, objs); err != nil {
		return err
	}
	var keys []engine.Key
	for _, obj := range objs.Runs {
		if err := mergeContext(obj, set); err != nil {
			return err
		}
		obj.APIVersion, obj.Kind = v1alpha1.GroupVersion.String(), v1alpha1.KindWorkflowRun
		body, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		var created remoteRun
		if err := r.call(ctx, "POST", "/api/v1/runs", "application/json", body, &created); err != nil {
			return err
		}
		keys = append(keys, engine.Key{Namespace: created.Namespace, Name: created.Name})
	}
	g.code = g.follow(ctx, r, keys)
	return nil
}

// follow shows the runs' progress from their event streams until each has settled, and
// returns the exit code they call for.
func (g *globals) follow(ctx context.Context, r *remote, keys []engine.Key) int {
	w := newWatcher(g)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, k := range keys {
		wg.Go(func() { r.stream(ctx, k, w.update) })
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if code, settled := w.verdict(keys, nil); settled {
			w.progress.Tick()
			return code
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(g.stderr, "interrupted: the runs go on on the server\n")
			return exitFailed
		case <-w.changed:
		case <-tick.C:
			w.progress.Tick()
		}
	}
}

// stream reads a run's event stream, calling changed with each version of the run, and
// reconnects when the stream breaks, until ctx ends.
func (r *remote) stream(ctx context.Context, key engine.Key, changed func(run *engine.Run, settled bool)) {
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+runPath(key.Namespace, key.Name)+"/events", nil)
		if err != nil {
			return
		}
		if r.token != "" {
			req.Header.Set("Authorization", "Bearer "+r.token)
		}
		resp, err := r.http.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 16<<20)
			event := ""
			for sc.Scan() {
				line := sc.Text()
				if name, ok := strings.CutPrefix(line, "event: "); ok {
					event = name
				} else if data, ok := strings.CutPrefix(line, "data: "); ok && event == "run" {
					var rr remoteRun
					if json.Unmarshal([]byte(data), &rr) == nil {
						changed(rr.engineRun(), rr.Stepflow.Settled)
					}
				}
			}
		}
		if resp != nil {
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// remoteGet prints a run as the local get does.
func (g *globals) remoteGet(ctx context.Context, r *remote, name, output string) error {
	if output == "table" || output == "wide" {
		var rr remoteRun
		if err := r.call(ctx, "GET", runPath(g.namespace, name), "", nil, &rr); err != nil {
			return err
		}
		return printRunTable(g, rr.engineRun(), output == "wide") // the server has redacted it
	}
	var rr map[string]any
	if err := r.call(ctx, "GET", runPath(g.namespace, name), "", nil, &rr); err != nil {
		return err
	}
	delete(rr, "stepflow")
	return printObject(g, rr, output)
}

// remoteOperate sends an operation to the server and, for those that let the run go on,
// follows the run to its end. The server names who asks by the token, so op.By stays here.
func (g *globals) remoteOperate(ctx context.Context, r *remote, name string, op engine.Operation, follow bool) error {
	op.By = ""
	body, err := json.Marshal(op)
	if err != nil {
		return err
	}
	if err := r.call(ctx, "POST", runPath(g.namespace, name)+"/"+string(op.Kind), "application/json", body, nil); err != nil {
		return err
	}
	if !follow {
		fmt.Fprintf(g.stdout, "%s: done\n", name)
		return nil
	}
	g.code = asked(op, g.follow(ctx, r, []engine.Key{{Namespace: g.namespace, Name: name}}))
	return nil
}

// remoteList prints the server's runs as the local list does.
func (g *globals) remoteList(ctx context.Context, r *remote, phase string, all bool) error {
	q := url.Values{"limit": {"1000"}}
	if !all {
		q.Set("namespace", g.namespace)
	}
	if phase != "" {
		q.Set("phase", phase)
	}
	var page struct {
		Items []struct {
			Namespace string                    `json:"namespace"`
			Name      string                    `json:"name"`
			Phase     v1alpha1.WorkflowRunPhase `json:"phase"`
			Message   string                    `json:"message"`
			StartTime time.Time                 `json:"startTime"`
			EndTime   time.Time                 `json:"endTime"`
		} `json:"items"`
	}
	if err := r.call(ctx, "GET", "/api/v1/runs?"+q.Encode(), "", nil, &page); err != nil {
		return err
	}
	runs := make([]store.RunSummary, 0, len(page.Items))
	for _, it := range page.Items {
		runs = append(runs, store.RunSummary{Namespace: it.Namespace, Name: it.Name, Phase: it.Phase, Message: it.Message, StartTime: it.StartTime, EndTime: it.EndTime})
	}
	return printRuns(g, runs)
}

// remoteLogs prints a run's log from the server.
func (g *globals) remoteLogs(ctx context.Context, r *remote, name, step string) error {
	path := runPath(g.namespace, name) + "/logs"
	if step != "" {
		path += "?step=" + url.QueryEscape(step)
	}
	var out struct {
		Items []engine.LogEntry `json:"items"`
	}
	if err := r.call(ctx, "GET", path, "", nil, &out); err != nil {
		return err
	}
	for _, e := range out.Items {
		fmt.Fprintln(g.stdout, formatLog(e))
	}
	return nil
}
