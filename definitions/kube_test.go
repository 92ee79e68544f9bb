package definitions_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/cluster"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/provider/config"
	"github.com/stepflow/stepflow/provider/email"
	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/provider/notification"
	"github.com/stepflow/stepflow/provider/op"
	"github.com/stepflow/stepflow/provider/util"
	"github.com/stepflow/stepflow/step"
)

// api is a real API server for the step types that need a cluster; it serves a minimal
// Application CRD (KubeVela's core.oam.dev/v1beta1 Application) besides stepflow's.
var api *apiservertest.Cluster

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	var err error
	if api, err = apiservertest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := installApplicationCRD(); err != nil {
		_ = api.Stop()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = api.Stop()
	os.Exit(code)
}

func installApplicationCRD() error {
	preserve := true
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "applications.core.oam.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "core.oam.dev",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "applications", Singular: "application", Kind: "Application", ListKind: "ApplicationList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1beta1", Served: true, Storage: true,
				Schema:       &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}},
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
			}},
		},
	}
	_, err := envtest.InstallCRDs(api.Config, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}})
	return err
}

// kubeEnv runs built-in step types against the API server, in a namespace of its own.
type kubeEnv struct {
	t         *testing.T
	c         client.Client
	runner    *step.Runner
	namespace string
}

func newKubeEnv(t *testing.T) *kubeEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	c, err := client.New(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := apiservertest.Namespace(t)
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	clusters := cluster.New(api.Config, cluster.Options{})
	reg := step.NewRegistry()
	builtin.Register(reg)
	op.Register(reg)
	kube.Register(reg, kube.Options{Clusters: clusters})
	config.Register(reg, config.Options{Clusters: clusters})
	util.Register(reg, util.Options{Clusters: clusters})
	notification.Register(reg, notification.Options{})
	email.Register(reg, email.Options{})
	return &kubeEnv{t: t, c: c, namespace: ns, runner: step.NewRunner(step.Options{Registry: reg, Definitions: builtins{}})}
}

// step evaluates a step of type typ once, with the memo of earlier evaluations of its attempt.
func (e *kubeEnv) step(typ string, props map[string]any, outputs map[string]string, memo map[string]json.RawMessage) *engine.StepResult {
	e.t.Helper()
	raw, err := json.Marshal(props)
	if err != nil {
		e.t.Fatal(err)
	}
	req := &engine.StepRequest{
		Run:        engine.Key{Namespace: e.namespace, Name: "wr"},
		Step:       v1alpha1.WorkflowStepBase{Name: "s", Type: typ},
		Properties: raw,
		Context:    map[string]any{"name": "wr", "namespace": e.namespace, "stepName": "s", "stepSessionID": "s-1"},
		Memo:       memo,
		Now:        time.Now(),
	}
	for name, from := range outputs {
		req.Step.Outputs = append(req.Step.Outputs, v1alpha1.OutputItem{Name: name, ValueFrom: from})
	}
	res, err := e.runner.RunStep(context.Background(), req)
	if err != nil {
		e.t.Fatalf("%s: %v", typ, err)
	}
	return res
}

func (e *kubeEnv) outcome(res *engine.StepResult, want engine.Outcome) {
	e.t.Helper()
	if res.Outcome != want {
		e.t.Fatalf("outcome %v (%s: %s), want %v", res.Outcome, res.Reason, res.Message, want)
	}
}

func output(res *engine.StepResult, name string) string {
	return string(res.Outputs[name])
}

func (e *kubeEnv) get(obj client.Object, name string) bool {
	e.t.Helper()
	err := e.c.Get(context.Background(), client.ObjectKey{Namespace: e.namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return true
}

func TestApplyObjectThenReadObject(t *testing.T) {
	e := newKubeEnv(t)
	res := e.step("apply-object", map[string]any{"value": map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "cm"}, "data": map[string]any{"k": "v"},
	}}, map[string]string{"uid": "apply.value.metadata.uid"}, nil)
	e.outcome(res, engine.Succeeded)
	var cm corev1.ConfigMap
	if !e.get(&cm, "cm") || output(res, "uid") != `"`+string(cm.UID)+`"` {
		t.Fatalf("apply-object: output uid %s, ConfigMap %v", output(res, "uid"), cm.UID)
	}
	res = e.step("read-object", map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"},
		map[string]string{"k": "output.value.data.k", "same": "output.$returns.value.data.k"}, nil)
	e.outcome(res, engine.Succeeded)
	if output(res, "k") != `"v"` || output(res, "same") != `"v"` {
		t.Errorf("read-object outputs %s and %s", output(res, "k"), output(res, "same"))
	}
}

func TestApplyDeploymentWaitsForReadyReplicas(t *testing.T) {
	e := newKubeEnv(t)
	props := map[string]any{"image": "nginx:1.27", "replicas": 2, "cmd": []any{"nginx", "-g", "daemon off;"}}
	res := e.step("apply-deployment", props, nil, nil)
	e.outcome(res, engine.Waiting)
	var d appsv1.Deployment
	if !e.get(&d, "s") || *d.Spec.Replicas != 2 || d.Spec.Template.Spec.Containers[0].Command[0] != "nginx" {
		t.Fatalf("the Deployment was not applied as asked: %+v", d.Spec)
	}
	// No kubelet runs here: the test reports the replicas ready itself.
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 1, AvailableReplicas: 1}
	if err := e.c.Status().Update(context.Background(), &d); err != nil {
		t.Fatal(err)
	}
	res = e.step("apply-deployment", props, nil, res.Memo)
	e.outcome(res, engine.Waiting)
	d.Status.ReadyReplicas, d.Status.AvailableReplicas = 2, 2
	if err := e.c.Status().Update(context.Background(), &d); err != nil {
		t.Fatal(err)
	}
	e.outcome(e.step("apply-deployment", props, nil, res.Memo), engine.Succeeded)
}

func job(name string) map[string]any {
	return map[string]any{
		"apiVersion": "batch/v1", "kind": "Job",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"restartPolicy": "Never",
			"containers":    []any{map[string]any{"name": "c", "image": "busybox"}},
		}}},
	}
}

// finishJob sets a Job's status as the job controller would when it ends.
func (e *kubeEnv) finishJob(name string, succeeded bool) {
	e.t.Helper()
	e.finishJobIn(e.namespace, name, succeeded)
}

func (e *kubeEnv) finishJobIn(namespace, name string, succeeded bool) {
	e.t.Helper()
	var j batchv1.Job
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, &j); err != nil {
		e.t.Fatalf("Job %s/%s: %v", namespace, name, err)
	}
	start := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	end := metav1.NewTime(time.Now().Truncate(time.Second))
	cond := func(t batchv1.JobConditionType, reason string) batchv1.JobCondition {
		return batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: string(t) + " by the test", LastProbeTime: end, LastTransitionTime: end}
	}
	j.Status.StartTime = &start
	ready := int32(0)
	j.Status.Ready = &ready
	terminating := int32(0)
	j.Status.Terminating = &terminating
	if succeeded {
		j.Status.Succeeded = 1
		j.Status.CompletionTime = &end
		j.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobSuccessCriteriaMet, "CompletionsReached"), cond(batchv1.JobComplete, "CompletionsReached")}
	} else {
		j.Status.Failed = 1
		j.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobFailureTarget, "BackoffLimitExceeded"), cond(batchv1.JobFailed, "BackoffLimitExceeded")}
	}
	if err := e.c.Status().Update(context.Background(), &j); err != nil {
		e.t.Fatal(err)
	}
}

func TestApplyJobWaitsForTheJobToComplete(t *testing.T) {
	e := newKubeEnv(t)
	props := map[string]any{"value": job("ok")}
	res := e.step("apply-job", props, nil, nil)
	e.outcome(res, engine.Waiting)
	e.finishJob("ok", true)
	e.outcome(e.step("apply-job", props, nil, res.Memo), engine.Succeeded)

	props = map[string]any{"value": job("bad")}
	res = e.step("apply-job", props, nil, nil)
	e.outcome(res, engine.Waiting)
	e.finishJob("bad", false)
	res = e.step("apply-job", props, nil, res.Memo)
	e.outcome(res, engine.Failed)
	if !strings.Contains(res.Message, "Job bad failed: BackoffLimitExceeded") {
		t.Errorf("message %q", res.Message)
	}
}

func TestCleanJobsDeletesJobsAndPodsByLabel(t *testing.T) {
	e := newKubeEnv(t)
	ctx := context.Background()
	mine := map[string]string{"workflow.oam.dev/name": "wr"}
	for name, lbls := range map[string]map[string]string{"mine": mine, "other": {"workflow.oam.dev/name": "other"}} {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.namespace, Labels: lbls}, Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}},
		}}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.namespace, Labels: lbls}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		for _, o := range []client.Object{j, p} {
			if err := e.c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.outcome(e.step("clean-jobs", map[string]any{}, nil, nil), engine.Succeeded)
	// Deletion of a Job with dependents is in the background: it is gone, or going.
	gone := func(o client.Object, name string) bool { return !e.get(o, name) || o.GetDeletionTimestamp() != nil }
	if !gone(&batchv1.Job{}, "mine") || !gone(&corev1.Pod{}, "mine") {
		t.Error("the run's Job or Pod is still there")
	}
	if gone(&batchv1.Job{}, "other") || gone(&corev1.Pod{}, "other") {
		t.Error("clean-jobs deleted another run's Job or Pod")
	}
}

func TestExport2ConfigAndExport2Secret(t *testing.T) {
	e := newKubeEnv(t)
	e.outcome(e.step("export2config", map[string]any{"configName": "out", "data": map[string]any{"text": "hi", "n": 3, "obj": map[string]any{"a": true}}}, nil, nil), engine.Succeeded)
	var cm corev1.ConfigMap
	if !e.get(&cm, "out") || cm.Data["text"] != "hi" || cm.Data["n"] != "3" || cm.Data["obj"] != `{"a":true}` {
		t.Errorf("ConfigMap data %v", cm.Data)
	}
	e.outcome(e.step("export2secret", map[string]any{"secretName": "plain", "data": map[string]any{"token": "t0k"}}, nil, nil), engine.Succeeded)
	var s corev1.Secret
	if !e.get(&s, "plain") || string(s.Data["token"]) != "t0k" || s.Type != corev1.SecretTypeOpaque {
		t.Errorf("Secret %v %v", s.Type, s.Data)
	}
	e.outcome(e.step("export2secret", map[string]any{"secretName": "registry", "kind": "docker-registry",
		"dockerRegistry": map[string]any{"username": "u", "password": "p", "server": "r.example.com"}}, nil, nil), engine.Succeeded)
	if !e.get(&s, "registry") || s.Type != corev1.SecretTypeDockerConfigJson {
		t.Fatalf("docker-registry Secret type %v", s.Type)
	}
	var auths struct {
		Auths map[string]struct{ Username, Password, Auth string }
	}
	if err := json.Unmarshal(s.Data[".dockerconfigjson"], &auths); err != nil || auths.Auths["r.example.com"].Auth != "dTpw" {
		t.Errorf(".dockerconfigjson = %s (%v)", s.Data[".dockerconfigjson"], err)
	}
}

func TestConfigStepTypes(t *testing.T) {
	e := newKubeEnv(t)
	e.outcome(e.step("create-config", map[string]any{"name": "db", "template": "database", "config": map[string]any{"host": "db.local", "port": 5432}}, nil, nil), engine.Succeeded)
	e.outcome(e.step("create-config", map[string]any{"name": "cache", "template": "database", "config": map[string]any{"host": "cache.local"}}, nil, nil), engine.Succeeded)
	res := e.step("read-config", map[string]any{"name": "db"}, map[string]string{"host": "output.$returns.config.host"}, nil)
	e.outcome(res, engine.Succeeded)
	if output(res, "host") != `"db.local"` {
		t.Errorf("read-config: %s", output(res, "host"))
	}
	res = e.step("list-config", map[string]any{"template": "database"}, map[string]string{"names": "[for c in output.$returns.configs {c.name}]"}, nil)
	e.outcome(res, engine.Succeeded)
	if output(res, "names") != `["cache","db"]` {
		t.Errorf("list-config: %s", output(res, "names"))
	}
	e.outcome(e.step("delete-config", map[string]any{"name": "db"}, nil, nil), engine.Succeeded)
	if e.get(&corev1.Secret{}, "db") {
		t.Error("delete-config left the Secret")
	}
}

func application(name string) map[string]any {
	return map[string]any{
		"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"components": []any{map[string]any{"name": "web", "type": "webservice"}}},
	}
}

func (e *kubeEnv) setAppStatus(name, status string) {
	e.t.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("core.oam.dev/v1beta1")
	u.SetKind("Application")
	if !e.get(u, name) {
		e.t.Fatalf("Application %s was not applied", name)
	}
	u.Object["status"] = map[string]any{"status": status}
	if err := e.c.Status().Update(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
}

func TestApplyAppWaitsUntilRunningAndReadAppReadsIt(t *testing.T) {
	e := newKubeEnv(t)
	props := map[string]any{"data": application("inline")}
	res := e.step("apply-app", props, nil, nil)
	e.outcome(res, engine.Waiting)
	e.setAppStatus("inline", "running")
	e.outcome(e.step("apply-app", props, nil, res.Memo), engine.Succeeded)

	// From a ConfigMap key holding the Application as YAML.
	yaml := "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: fromref\n  namespace: " + e.namespace + "\nspec:\n  components: []\n"
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "apps", Namespace: e.namespace}, Data: map[string]string{"application": yaml}}
	if err := e.c.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	props = map[string]any{"ref": map[string]any{"name": "apps"}}
	res = e.step("apply-app", props, nil, nil)
	e.outcome(res, engine.Waiting)
	e.setAppStatus("fromref", "running")
	e.outcome(e.step("apply-app", props, nil, res.Memo), engine.Succeeded)

	res = e.step("read-app", map[string]any{"name": "inline"}, map[string]string{"status": "read.value.status.status"}, nil)
	e.outcome(res, engine.Succeeded)
	if output(res, "status") != `"running"` {
		t.Errorf("read-app output %s", output(res, "status"))
	}
	res = e.step("read-app", map[string]any{"name": "nowhere"}, nil, nil)
	e.outcome(res, engine.Succeeded)
	if res.Message != "Application not found" {
		t.Errorf("read-app of a missing Application: message %q", res.Message)
	}
}
