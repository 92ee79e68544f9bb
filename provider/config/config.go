// Package config supplies the CUE package vela/config: named configurations kept as KubeVela
// keeps them, in Secrets labelled config.oam.dev/catalog=velacore-config and
// config.oam.dev/type=<template>, the content as JSON under the data key input-properties.
// Configurations live in any cluster of the registry (cluster "" is the local one).
package config

import (
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/redact"
	"github.com/stepflow/stepflow/step"
)

//go:embed config.cue
var source string

// The labels and data key of a configuration Secret, as KubeVela writes them.
const (
	LabelCatalog  = "config.oam.dev/catalog"
	CatalogValue  = "velacore-config"
	LabelType     = "config.oam.dev/type"
	KeyProperties = "input-properties"
)

// DefaultNamespace is where configurations are kept when an action names no namespace.
const DefaultNamespace = v1alpha1.SystemNamespace

// Clusters gives the client of a cluster by name ("" is the local cluster); *cluster.Registry
// implements it. One that is also a kube.NamespacedClusters is asked with the run's namespace.
type Clusters interface {
	Client(ctx context.Context, name string) (client.Client, error)
}

// Options configure the provider; the zero value registers actions that fail saying no
// cluster is configured.
type Options struct {
	// Clusters resolves the cluster parameter of every action.
	Clusters Clusters
	// FieldManager names stepflow in the server-side apply that writes a configuration; ""
	// means kube.DefaultFieldManager.
	FieldManager string
}

// Register adds the package (import path "vela/config") and its actions config.create,
// config.read, config.list and config.delete to r.
func Register(r *step.Registry, opts Options) {
	if opts.FieldManager == "" {
		opts.FieldManager = kube.DefaultFieldManager
	}
	p := &provider{opts: opts}
	r.AddPackage(step.Package{Path: "vela/config", Source: source})
	r.Register(step.Action{Provider: "config", Do: "create", Run: p.create, SideEffect: step.Always})
	r.Register(step.Action{Provider: "config", Do: "read", Run: p.read, LegacyOutputs: []string{"config"}})
	r.Register(step.Action{Provider: "config", Do: "list", Run: p.list, LegacyOutputs: []string{"configs"}})
	r.Register(step.Action{Provider: "config", Do: "delete", Run: p.delete, SideEffect: step.Always})
}

type provider struct {
	opts Options
}

type params struct {
	Name      string         `json:"name"`
	Namespace string         `json:"namespace"`
	Template  string         `json:"template"`
	Config    map[string]any `json:"config"`
	Cluster   string         `json:"cluster"`
}

// start decodes the parameters and finds the cluster's client.
func (p *provider) start(ctx context.Context, call *step.Call, action string, needName bool) (*params, client.Client, error) {
	var in params
	if err := call.Decode(&in); err != nil {
		return nil, nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/config: #%s: %w", action, err))
	}
	if needName && in.Name == "" {
		return nil, nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/config: #%s needs a name", action))
	}
	if in.Namespace == "" {
		in.Namespace = DefaultNamespace
	}
	if p.opts.Clusters == nil {
		return nil, nil, engine.Terminal(v1alpha1.ReasonExecute, errors.New("vela/config: no cluster is configured (give a kubeconfig)"))
	}
	cl, err := kube.ClientFor(ctx, p.opts.Clusters, call.Run.Namespace, in.Cluster)
	if err != nil {
		return nil, nil, fmt.Errorf("vela/config: %w", err)
	}
	return &in, cl, nil
}

func (in *params) describe(action string) string {
	where := "the local cluster"
	if in.Cluster != "" {
		where = fmt.Sprintf("cluster %q", in.Cluster)
	}
	return fmt.Sprintf("vela/config: %s config %s/%s in %s", action, in.Namespace, in.Name, where)
}

func (p *provider) create(ctx context.Context, call *step.Call) (any, error) {
	in, cl, err := p.start(ctx, call, "CreateConfig", true)
	if err != nil {
		return nil, err
	}
	content := in.Config
	if content == nil {
		content = map[string]any{}
	}
	// A configuration is kept in a Secret because it holds credentials.
	call.Sensitive(redact.Leaves(content)...)
	data, err := json.Marshal(content)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: config: %w", in.describe("create"), err))
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata": map[string]any{
			"name":      in.Name,
			"namespace": in.Namespace,
			"labels": map[string]any{
				LabelCatalog:           CatalogValue,
				LabelType:              in.Template,
				kube.LabelRunName:      call.Run.Name,
				kube.LabelRunNamespace: call.Run.Namespace,
			},
		},
		"type": string(corev1.SecretTypeOpaque),
		"data": map[string]any{KeyProperties: base64.StdEncoding.EncodeToString(data)},
	}}
	err = cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(p.opts.FieldManager), client.ForceOwnership)
	if err != nil {
		return nil, kube.Failure(in.describe("create"), err)
	}
	return nil, nil
}

func (p *provider) read(ctx context.Context, call *step.Call) (any, error) {
	in, cl, err := p.start(ctx, call, "ReadConfig", true)
	if err != nil {
		return nil, err
	}
	var s corev1.Secret
	err = cl.Get(ctx, client.ObjectKey{Namespace: in.Namespace, Name: in.Name}, &s)
	if apierrors.IsNotFound(err) {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: no such config", in.describe("read")))
	}
	if err != nil {
		return nil, kube.Failure(in.describe("read"), err)
	}
	content, err := properties(&s)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("%s: %w", in.describe("read"), err))
	}
	call.Sensitive(redact.Leaves(content)...)
	return map[string]any{"config": content}, nil
}

func (p *provider) list(ctx context.Context, call *step.Call) (any, error) {
	in, cl, err := p.start(ctx, call, "ListConfig", false)
	if err != nil {
		return nil, err
	}
	if in.Template == "" {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, errors.New("vela/config: #ListConfig needs a template"))
	}
	var list corev1.SecretList
	err = cl.List(ctx, &list, client.InNamespace(in.Namespace), client.MatchingLabels{LabelCatalog: CatalogValue, LabelType: in.Template})
	if err != nil {
		return nil, kube.Failure(fmt.Sprintf("vela/config: list the configs of template %q in namespace %s", in.Template, in.Namespace), err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	configs := make([]any, 0, len(list.Items))
	for i := range list.Items {
		content, err := properties(&list.Items[i])
		if err != nil {
			continue // not one this provider can read; KubeVela skips them too
		}
		call.Sensitive(redact.Leaves(content)...)
		configs = append(configs, map[string]any{"name": list.Items[i].Name, "config": content})
	}
	return map[string]any{"configs": configs}, nil
}

func (p *provider) delete(ctx context.Context, call *step.Call) (any, error) {
	in, cl, err := p.start(ctx, call, "DeleteConfig", true)
	if err != nil {
		return nil, err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: in.Namespace, Name: in.Name}}
	if err := cl.Delete(ctx, s); err != nil && !apierrors.IsNotFound(err) {
		return nil, kube.Failure(in.describe("delete"), err)
	}
	return nil, nil
}

// properties decodes a configuration Secret's content.
func properties(s *corev1.Secret) (map[string]any, error) {
	raw, ok := s.Data[KeyProperties]
	if !ok {
		return map[string]any{}, nil
	}
	var content map[string]any
	if err := json.Unmarshal(raw, &content); err != nil {
		return nil, fmt.Errorf("data key %s is not a JSON object: %w", KeyProperties, err)
	}
	return content, nil
}
