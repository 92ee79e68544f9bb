package config_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/config"
	"github.com/stepflow/stepflow/provider/op"
	"github.com/stepflow/stepflow/step"
)

var api *apiservertest.Cluster

func TestMain(m *testing.M) { apiservertest.Main(m, &api) }

type env struct {
	t         *testing.T
	client    client.Client
	runner    *step.Runner
	namespace string
}

func setup(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	c, err := client.New(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := strings.ToLower(t.Name())
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	reg := step.NewRegistry()
	builtin.Register(reg)
	op.Register(reg)
	config.Register(reg, config.Options{Clusters: cluster.New(api.Config, cluster.Options{})})
	return &env{t: t, client: c, namespace: ns, runner: step.NewRunner(step.Options{Registry: reg, Definitions: templates{}})}
}

type templates struct{}

func (templates) Template(_ context.Context, _, typ string) (string, error) { return typ, nil }

// run evaluates template once, with NS replaced by the test's namespace, and returns the outputs.
func (e *env) run(template string, outputs map[string]string) (map[string]any, error) {
	e.t.Helper()
	template = strings.ReplaceAll(template, "NS", e.namespace)
	req := &engine.StepRequest{
		Run:        engine.Key{Namespace: e.namespace, Name: "wr"},
		Step:       v1alpha1.WorkflowStepBase{Name: "s", Type: template},
		Properties: json.RawMessage(`{}`),
		Context:    map[string]any{"name": "wr", "namespace": e.namespace},
	}
	for name, from := range outputs {
		req.Step.Outputs = append(req.Step.Outputs, v1alpha1.OutputItem{Name: name, ValueFrom: from})
	}
	res, err := e.runner.RunStep(context.Background(), req)
	if err != nil {
		return nil, err
	}
	if res.Outcome != engine.Succeeded {
		e.t.Fatalf("step %v: %s %s", res.Outcome, res.Reason, res.Message)
	}
	out := map[string]any{}
	for name, raw := range res.Outputs {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			e.t.Fatal(err)
		}
		out[name] = v
	}
	return out, nil
}

func (e *env) secret(name string) *corev1.Secret {
	e.t.Helper()
	var s corev1.Secret
	err := e.client.Get(context.Background(), client.ObjectKey{Namespace: e.namespace, Name: name}, &s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return &s
}

func TestConfigsAreKeptAsKubeVelaKeepsThem(t *testing.T) {
	e := setup(t)
	if _, err := e.run(`
import "vela/config"

a: config.#CreateConfig & {$params: {name: "registry-a", namespace: "NS", template: "image-registry", config: {url: "a.example.com", insecure: true}}}
b: config.#CreateConfig & {$params: {name: "registry-b", namespace: "NS", template: "image-registry", config: url: "b.example.com"}}
c: config.#CreateConfig & {$params: {name: "other", namespace: "NS", template: "helm-repository", config: url: "c"}}
`, nil); err != nil {
		t.Fatal(err)
	}
	s := e.secret("registry-a")
	if s == nil {
		t.Fatal("no Secret for the config")
	}
	if s.Labels[config.LabelCatalog] != "velacore-config" || s.Labels[config.LabelType] != "image-registry" {
		t.Errorf("labels %v", s.Labels)
	}
	var content map[string]any
	if err := json.Unmarshal(s.Data["input-properties"], &content); err != nil || content["url"] != "a.example.com" || content["insecure"] != true {
		t.Errorf("input-properties = %s (%v)", s.Data["input-properties"], err)
	}

	out, err := e.run(`
import ("vela/config", "vela/op")

read: config.#ReadConfig & {$params: {name: "registry-a", namespace: "NS"}}
old: op.#ReadConfig & {name: "registry-b", namespace: "NS"}
list: config.#ListConfig & {$params: {template: "image-registry", namespace: "NS"}}
oldList: op.#ListConfig & {template: "helm-repository", namespace: "NS"}
`, map[string]string{
		"read": "read.$returns.config.url", "old": "old.config.url",
		"list": "[for c in list.$returns.configs {c.name + \"=\" + c.config.url}]", "oldList": "[for c in oldList.configs {c.name}]",
	})
	if err != nil {
		t.Fatal(err)
	}
	if out["read"] != "a.example.com" || out["old"] != "b.example.com" {
		t.Errorf("read %v and %v", out["read"], out["old"])
	}
	if fmt.Sprint(out["list"]) != "[registry-a=a.example.com registry-b=b.example.com]" || fmt.Sprint(out["oldList"]) != "[other]" {
		t.Errorf("listed %v and %v", out["list"], out["oldList"])
	}

	// Creating again replaces the content.
	if _, err := e.run(`
import "vela/op"

again: op.#CreateConfig & {name: "registry-a", namespace: "NS", template: "image-registry", config: url: "moved.example.com"}
`, nil); err != nil {
		t.Fatal(err)
	}
	content = nil
	if err := json.Unmarshal(e.secret("registry-a").Data["input-properties"], &content); err != nil || content["url"] != "moved.example.com" || content["insecure"] != nil {
		t.Errorf("after a second create: %v (%v)", content, err)
	}

	if _, err := e.run(`
import ("vela/config", "vela/op")

del: config.#DeleteConfig & {$params: {name: "registry-a", namespace: "NS"}}
old: op.#DeleteConfig & {name: "registry-b", namespace: "NS"}
missing: config.#DeleteConfig & {$params: {name: "never-was", namespace: "NS"}}
`, nil); err != nil {
		t.Fatal(err)
	}
	if e.secret("registry-a") != nil || e.secret("registry-b") != nil || e.secret("other") == nil {
		t.Error("delete removed the wrong configs")
	}
}

func TestReadingAMissingConfigFailsNamingIt(t *testing.T) {
	e := setup(t)
	_, err := e.run(`
import "vela/config"

read: config.#ReadConfig & {$params: {name: "nope", namespace: "NS"}}
`, nil)
	var te *engine.TerminalError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "config "+e.namespace+"/nope") {
		t.Errorf("err = %v", err)
	}
	_, err = e.run(`
import "vela/config"

read: config.#ReadConfig & {$params: {name: "nope", namespace: "NS", cluster: "elsewhere"}}
`, nil)
	if !errors.As(err, &te) || !strings.Contains(err.Error(), `cluster "elsewhere" is not registered`) {
		t.Errorf("unknown cluster: %v", err)
	}
}
