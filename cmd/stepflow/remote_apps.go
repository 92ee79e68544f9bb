package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/server"
	"github.com/stepflow/stepflow/store"
)

// appPath is the API path of an Application.
func appPath(namespace, name string) string {
	return "/api/v1/applications/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
}

// remoteAppUp sends the files' Applications and X-Definitions to the server, follows the
// delivery runs it starts, and prints each Application's phase once they settled.
func (g *globals) remoteAppUp(ctx context.Context, r *remote, files []string) error {
	var body bytes.Buffer
	for _, f := range g.paths(files) {
		b, err := os.ReadFile(f)
		if err != nil {
			return invalidErr(err)
		}
		body.WriteString("---\n")
		body.Write(b)
		body.WriteString("\n")
	}
	var answer struct {
		Items []server.AppUp `json:"items"`
	}
	if err := r.call(ctx, "POST", "/api/v1/applications", "application/yaml", body.Bytes(), &answer); err != nil {
		return err
	}
	var keys []engine.Key
	for _, up := range answer.Items {
		if up.Unchanged {
			fmt.Fprintf(g.stdout, "application %s unchanged at revision %s\n", up.Name, up.Revision)
			continue
		}
		fmt.Fprintf(g.stdout, "application %s: revision %s, delivered by run %s\n", up.Name, up.Revision, up.Run)
		keys = append(keys, engine.Key{Namespace: up.Namespace, Name: up.Run})
	}
	code := exitOK
	if len(keys) > 0 {
		code = g.follow(ctx, r, keys)
	}
	for _, up := range answer.Items {
		var app v1beta1.Application
		if err := r.call(ctx, "GET", appPath(up.Namespace, up.Name), "", nil, &app); err != nil {
			return err
		}
		printAppLine(g.stdout, &app)
	}
	g.code = code
	return nil
}

// remoteApp reads an Application, its status brought up to date by the server.
func (g *globals) remoteApp(ctx context.Context, r *remote, name string) (*v1beta1.Application, error) {
	var app v1beta1.Application
	if err := r.call(ctx, "GET", appPath(g.namespace, name), "", nil, &app); err != nil {
		return nil, err
	}
	return &app, nil
}

// remoteAppRevisions lists an Application's revisions.
func (g *globals) remoteAppRevisions(ctx context.Context, r *remote, name string) ([]*store.AppRevision, error) {
	var answer struct {
		Items []server.AppRevision `json:"items"`
	}
	if err := r.call(ctx, "GET", appPath(g.namespace, name)+"/revisions", "", nil, &answer); err != nil {
		return nil, err
	}
	out := make([]*store.AppRevision, 0, len(answer.Items))
	for _, it := range answer.Items {
		out = append(out, &store.AppRevision{Object: it.Object, App: name, Number: it.Number, Hash: it.Hash, Run: it.Run, Resources: it.Resources})
	}
	return out, nil
}

// remoteAppRollback asks the server to roll back, and follows the new revision's run.
func (g *globals) remoteAppRollback(ctx context.Context, r *remote, name string, number int64) error {
	body, err := json.Marshal(map[string]int64{"revision": number})
	if err != nil {
		return err
	}
	var up server.AppUp
	if err := r.call(ctx, "POST", appPath(g.namespace, name)+"/rollback", "application/json", body, &up); err != nil {
		return err
	}
	code := exitOK
	if up.Unchanged {
		fmt.Fprintf(g.stdout, "application %s is at revision %s already, the spec of revision %d\n", name, up.Revision, number)
	} else {
		fmt.Fprintf(g.stdout, "application %s: revision %s (the spec of revision %d), delivered by run %s\n", name, up.Revision, number, up.Run)
		code = g.follow(ctx, r, []engine.Key{{Namespace: up.Namespace, Name: up.Run}})
	}
	app, err := g.remoteApp(ctx, r, name)
	if err != nil {
		return err
	}
	printAppLine(g.stdout, app)
	g.code = code
	return nil
}

// remoteAppDelete asks the server to delete an Application and what it applied.
func (g *globals) remoteAppDelete(ctx context.Context, r *remote, name string) error {
	return r.call(ctx, "DELETE", appPath(g.namespace, name), "", nil, nil)
}

// remoteAppList lists the Applications of a namespace ("" for all that the token sees).
func (g *globals) remoteAppList(ctx context.Context, r *remote, namespace string) ([]*v1beta1.Application, error) {
	var answer struct {
		Items []*v1beta1.Application `json:"items"`
	}
	path := "/api/v1/applications"
	if namespace != "" {
		path += "?namespace=" + url.QueryEscape(namespace)
	}
	if err := r.call(ctx, "GET", path, "", nil, &answer); err != nil {
		return nil, err
	}
	return answer.Items, nil
}
