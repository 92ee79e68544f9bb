package crd_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/apiservertest"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store/crd"
	"github.com/stepflow/stepflow/store/storetest"
)

var cluster *apiservertest.Cluster

func TestMain(m *testing.M) { apiservertest.Main(m, &cluster) }

func newClient(t *testing.T) client.Client {
	t.Helper()
	if cluster == nil {
		t.Skip("needs kube-apiserver and etcd (not in -short mode)")
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cluster.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var namespaces sync.Map

// freshNamespace makes the namespace, or empties it of the WorkflowRuns and ConfigMaps an
// earlier test (or an earlier -count) left there: the API server lives as long as the package's
// tests.
func freshNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	ctx := context.Background()
	if _, done := namespaces.LoadOrStore(name, true); !done {
		err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	for _, obj := range []client.Object{&v1alpha1.WorkflowRun{}, &corev1.ConfigMap{}} {
		if err := c.DeleteAllOf(ctx, obj, client.InNamespace(name)); err != nil {
			t.Fatal(err)
		}
	}
}

// The store passes the suite every engine.Store passes, on a real API server.
func TestStoreSuite(t *testing.T) {
	c := newClient(t)
	storetest.Run(t, func(t *testing.T) engine.Store {
		for _, ns := range []string{"round", "cas", "missing", "elsewhere", "logs", "concurrent", "race", "sensitive", "large"} {
			freshNamespace(t, c, ns)
		}
		return crd.New(crd.Options{Client: c})
	})
}

// A run with sensitive values keeps them, and everything that may hold them, out of the
// WorkflowRun: its status refers to the bookkeeping sealed in the context ConfigMap, which
// keeps the record the status refers to through a failed write.
func TestSensitiveBookkeepingIsSealedInTheConfigMap(t *testing.T) {
	c := newClient(t)
	freshNamespace(t, c, "sealed")
	ctx := context.Background()
	st := crd.New(crd.Options{Client: c})
	run := storetest.SensitiveRun("sealed", "run")
	if err := c.Create(ctx, &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Namespace: "sealed", Name: "run"}, Spec: run.Object.Spec}); err != nil {
		t.Fatal(err)
	}
	loaded, err := st.Load(ctx, run.Key())
	if err != nil {
		t.Fatal(err)
	}
	run.Version = loaded.Version
	logs := []engine.LogEntry{{Step: "fetch", Message: "read a secret"}}
	if err := st.Save(ctx, run, logs); err != nil {
		t.Fatal(err)
	}

	raw := func() (string, string) {
		t.Helper()
		var obj v1alpha1.WorkflowRun
		if err := c.Get(ctx, client.ObjectKey{Namespace: "sealed", Name: "run"}, &obj); err != nil {
			t.Fatal(err)
		}
		var cm corev1.ConfigMap
		if err := c.Get(ctx, client.ObjectKey{Namespace: "sealed", Name: crd.ContextName("run")}, &cm); err != nil {
			t.Fatal(err)
		}
		status, _ := json.Marshal(obj.Status)
		data, _ := json.Marshal(cm.Data)
		return string(status), string(data)
	}
	status, data := raw()
	if strings.Contains(status, storetest.Secret) || !strings.Contains(status, `"sealed":"`) {
		t.Errorf("the status holds the secret, or is not sealed: %s", status)
	}
	if !strings.Contains(data, storetest.Secret) || !strings.Contains(data, "read a secret") {
		t.Errorf("the ConfigMap lacks the sealed bookkeeping or the log: %s", data)
	}

	// A status write that fails after the ConfigMap was written: a user's write came first.
	stale, err := st.Load(ctx, run.Key())
	if err != nil {
		t.Fatal(err)
	}
	patch := client.RawPatch(types.MergePatchType, []byte(`{"status":{"message":"touched"}}`))
	if err := c.Status().Patch(ctx, &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Namespace: "sealed", Name: "run"}}, patch); err != nil {
		t.Fatal(err)
	}
	stale.Vars["late"] = json.RawMessage(`"lost"`)
	if err := st.Save(ctx, stale, nil); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("save over a user's write: %v, want a conflict", err)
	}
	fresh := crd.New(crd.Options{Client: c}) // no memory of the failed write
	got, err := fresh.Load(ctx, run.Key())
	if err != nil {
		t.Fatalf("load after the failed write: %v", err)
	}
	if got.Vars["late"] != nil || string(got.Vars["token"]) != `"`+storetest.Secret+`"` || len(got.Sensitive) != 1 {
		t.Errorf("after the failed write: vars %s, Sensitive %q", got.Vars, got.Sensitive)
	}
	got.Object.Status.Phase = v1alpha1.RunSucceeded
	got.Object.Status.Finished = true
	if err := fresh.Save(ctx, got, []engine.LogEntry{{Step: "notify", Message: "done"}}); err != nil {
		t.Fatal(err)
	}
	if status, _ := raw(); strings.Contains(status, storetest.Secret) {
		t.Errorf("the status holds the secret after more saves: %s", status)
	}
	if entries, err := fresh.Logs(ctx, run.Key(), ""); err != nil || len(entries) != 2 {
		t.Errorf("logs %v, %v; want both lines", entries, err)
	}
}

// A run's large variables are ConfigMaps of their own, owned by the WorkflowRun, written before
// the status that refers to them, split when over a ConfigMap's size, read back whole by a
// store that never saw them, sealed runs' too; the WorkflowRun stays small, and DeleteBlobs
// (what the controller calls when it deletes a run) leaves none.
func TestLargeVariablesAreOwnedConfigMaps(t *testing.T) {
	c := newClient(t)
	freshNamespace(t, c, "blobs")
	ctx := context.Background()
	for _, sensitive := range []bool{false, true} {
		name := "plain"
		run := storetest.NewRun("blobs", name)
		if sensitive {
			name = "sealed"
			run = storetest.SensitiveRun("blobs", name)
		}
		st := crd.New(crd.Options{Client: c})
		if err := c.Create(ctx, &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{Namespace: "blobs", Name: name}, Spec: run.Object.Spec}); err != nil {
			t.Fatal(err)
		}
		loaded, err := st.Load(ctx, run.Key())
		if err != nil {
			t.Fatal(err)
		}
		run.Version = loaded.Version
		big := storetest.LargeValue(1, 1_500_000) // two parts
		run.Vars["big"] = big
		run.Vars["other"] = storetest.LargeValue(2, 900_000)
		if err := st.Save(ctx, run, nil); err != nil {
			t.Fatal(err)
		}

		var obj v1alpha1.WorkflowRun
		if err := c.Get(ctx, client.ObjectKey{Namespace: "blobs", Name: name}, &obj); err != nil {
			t.Fatal(err)
		}
		var list corev1.ConfigMapList
		if err := c.List(ctx, &list, client.InNamespace("blobs"), client.MatchingLabels{crd.LabelBlob: "true", crd.LabelRunName: name}); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 4 {
			t.Errorf("%s: %d blob ConfigMaps, want 4 (two parts each)", name, len(list.Items))
		}
		for _, cm := range list.Items {
			if refs := cm.OwnerReferences; len(refs) != 1 || refs[0].UID != obj.UID || refs[0].Kind != "WorkflowRun" {
				t.Errorf("%s: ConfigMap %s is owned by %+v, want the WorkflowRun %s", name, cm.Name, refs, obj.UID)
			}
		}
		if n, err := st.RecordBytes(ctx, run.Key()); err != nil || n > 64<<10 {
			t.Errorf("%s: the WorkflowRun is %d bytes (%v): its large variables are in it", name, n, err)
		}
		var cm corev1.ConfigMap
		if err := c.Get(ctx, client.ObjectKey{Namespace: "blobs", Name: crd.ContextName(name)}, &cm); err == nil {
			if data, _ := json.Marshal(cm.Data); len(data) > 64<<10 {
				t.Errorf("%s: the context ConfigMap is %d bytes: the large variables are in it", name, len(data))
			}
		}

		got, err := crd.New(crd.Options{Client: c}).Load(ctx, run.Key())
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Vars["big"]) != string(big) || string(got.Vars["other"]) != string(run.Vars["other"]) {
			t.Errorf("%s: the large variables do not load as saved (%d and %d bytes)", name, len(got.Vars["big"]), len(got.Vars["other"]))
		}
		if sensitive && string(got.Vars["token"]) != `"`+storetest.Secret+`"` {
			t.Errorf("%s: token = %s", name, got.Vars["token"])
		}

		if err := crd.DeleteBlobs(ctx, c, run.Key()); err != nil {
			t.Fatal(err)
		}
		if n, err := st.BlobBytes(ctx, run.Key()); err != nil || n != 0 {
			t.Errorf("%s: %d bytes of blobs after DeleteBlobs (%v)", name, n, err)
		}
	}
}
