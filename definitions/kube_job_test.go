package definitions_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/engine"
)

// The step types that run a command in a Job apply it, wait while it runs, and succeed or fail
// with it. No kubelet runs here: the test ends each Job as the job controller would.
func TestJobStepTypesFollowTheirJob(t *testing.T) {
	e := newKubeEnv(t)
	if err := e.c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vela-system"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cases := []struct {
		typ       string
		props     map[string]any
		namespace string
		job       string
		image     string
	}{
		{"vela-cli", map[string]any{"command": []any{"vela", "status", "shop"}}, "vela-system", "wr-s-s-1", "oamdev/vela-cli"},
		{"addon-operation", map[string]any{"addonName": "fluxcd", "operation": "enable"}, "vela-system", "wr-s-1", "oamdev/vela-cli"},
		{"build-push-image", map[string]any{
			"context": map[string]any{"git": "github.com/example/shop", "branch": "main"},
			"image":   "registry.example.com/shop:v2",
		}, e.namespace, "wr-s-1-kaniko", "kaniko"},
	}
	for _, c := range cases {
		for _, succeed := range []bool{true, false} {
			res := e.step(c.typ, c.props, nil, nil)
			e.outcome(res, engine.Waiting)
			var j batchv1.Job
			if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: c.namespace, Name: c.job}, &j); err != nil {
				t.Fatalf("%s: Job %s/%s: %v", c.typ, c.namespace, c.job, err)
			}
			if img := j.Spec.Template.Spec.Containers[0].Image; !strings.Contains(img, c.image) {
				t.Errorf("%s: Job image %q, want %s", c.typ, img, c.image)
			}
			// Evaluated again while the Job runs, the step waits and applies nothing new.
			e.outcome(e.step(c.typ, c.props, nil, res.Memo), engine.Waiting)
			e.finishJobIn(c.namespace, c.job, succeed)
			want := engine.Failed
			if succeed {
				want = engine.Succeeded
			}
			e.outcome(e.step(c.typ, c.props, nil, res.Memo), want)
			if err := e.c.Delete(context.Background(), &j); err != nil {
				t.Fatal(err)
			}
			waitGone(t, e.c, &j)
		}
	}
}

func waitGone(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	for {
		err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		// Deleting a Job without a garbage collector leaves it with a finalizer at most.
		if len(obj.GetFinalizers()) > 0 {
			obj.SetFinalizers(nil)
			if err := c.Update(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The notification step reads a webhook URL from a Secret of the run's namespace, and the URL
// appears neither in the result nor in the step's log.
func TestNotificationReadsTheURLFromASecret(t *testing.T) {
	e := newKubeEnv(t)
	var mu sync.Mutex
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		body = string(b)
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	secretURL := srv.URL + "/services/T000/B000/very-secret-token"
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.namespace, Name: "webhooks"}, StringData: map[string]string{"slack": secretURL}}
	if err := e.c.Create(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	props := map[string]any{"slack": map[string]any{
		"url":     map[string]any{"secretRef": map[string]any{"name": "webhooks", "key": "slack"}},
		"message": map[string]any{"text": "shop v2 is deployed"},
	}}
	res := e.step("notification", props, nil, nil)
	e.outcome(res, engine.Succeeded)
	mu.Lock()
	got := body
	mu.Unlock()
	if !strings.Contains(got, "shop v2 is deployed") {
		t.Errorf("Slack received %q", got)
	}
	// Marked sensitive (the run hides it wherever it shows it), and nowhere else in the result.
	if !slices.Contains(res.Sensitive, secretURL) {
		t.Errorf("the secret URL is not marked sensitive: %q", res.Sensitive)
	}
	shown := *res
	shown.Sensitive = nil
	all, _ := json.Marshal(shown)
	if strings.Contains(string(all), "very-secret-token") {
		t.Errorf("the secret URL leaks into the step result or log: %s", all)
	}

	// A Secret without the key fails the step, saying which.
	props["slack"].(map[string]any)["url"] = map[string]any{"secretRef": map[string]any{"name": "webhooks", "key": "teams"}}
	res = e.step("notification", props, nil, nil)
	e.outcome(res, engine.Failed)
	if !strings.Contains(res.Message, "teams") {
		t.Errorf("message %q does not name the missing key", res.Message)
	}
}
