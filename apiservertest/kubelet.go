package apiservertest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Kubelet stands in for the kubelet of a node: no kubelet can run in the tests, so a loopback
// HTTPS server answers the kubelet's containerLogs API (GET
// /containerLogs/<namespace>/<pod>/<container>, with timestamps, sinceTime, tailLines and
// limitBytes), which the API server calls for GET /api/v1/namespaces/<namespace>/pods/<pod>/log
// of a pod bound to a node whose kubelet endpoint it is (Register). The API server really
// proxies the request: it dials the node's InternalIP (127.0.0.1) at the kubelet port the Node's
// status gives. It serves what the test wrote (Write).
type Kubelet struct {
	*httptest.Server
	mu    sync.Mutex
	logs  map[string][]logLine // by namespace/pod/container
	asked []url.Values         // the queries of the requests, in order
}

type logLine struct {
	at   time.Time
	text string
}

// NewKubelet starts a kubelet stand-in, closed when the test ends.
func NewKubelet(t testing.TB) *Kubelet {
	t.Helper()
	k := &Kubelet{logs: map[string][]logLine{}}
	k.Server = httptest.NewTLSServer(http.HandlerFunc(k.containerLogs))
	t.Cleanup(k.Close)
	return k
}

// Write adds lines to the log of a pod's container, stamped from at on, 100ms apart.
func (k *Kubelet) Write(namespace, pod, container string, at time.Time, lines ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := namespace + "/" + pod + "/" + container
	for i, text := range lines {
		k.logs[id] = append(k.logs[id], logLine{at.Add(time.Duration(i) * 100 * time.Millisecond), text})
	}
}

// Asked returns the queries of the requests the kubelet was sent, in order.
func (k *Kubelet) Asked() []url.Values {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.asked)
}

func (k *Kubelet) containerLogs(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/containerLogs/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	k.mu.Lock()
	k.asked = append(k.asked, q)
	lines := slices.Clone(k.logs[id])
	k.mu.Unlock()
	if s := q.Get("sinceTime"); s != "" {
		since, err := time.Parse(time.RFC3339, s)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		lines = slices.DeleteFunc(lines, func(l logLine) bool { return l.at.Before(since) })
	}
	if s := q.Get("tailLines"); s != "" {
		n, _ := strconv.Atoi(s)
		lines = lines[max(0, len(lines)-n):]
	}
	var b bytes.Buffer
	for _, l := range lines {
		if q.Get("timestamps") == "true" {
			b.WriteString(l.at.Format(time.RFC3339Nano) + " ")
		}
		b.WriteString(l.text + "\n")
	}
	out := b.Bytes()
	if s := q.Get("limitBytes"); s != "" {
		n, _ := strconv.Atoi(s)
		out = out[:min(n, len(out))]
	}
	_, _ = w.Write(out)
}

// Register creates the Node called name whose kubelet is k: its InternalIP is 127.0.0.1 and
// its kubelet endpoint k's port. The API server takes the kubelet's certificate without
// checking it, as it does when no --kubelet-certificate-authority is given. The Node is
// deleted when the test ends.
func (k *Kubelet) Register(t testing.TB, c client.Client, name string) {
	t.Helper()
	_, port, err := net.SplitHostPort(k.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatalf("register node %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), node) })
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(p)}},
	}
	if err := c.Status().Update(ctx, node); err != nil {
		t.Fatalf("register node %s: %v", name, err)
	}
}

// Started reports pod running with every container of its spec started, as its node's kubelet
// would once they had: the status a reader of containers' logs looks for.
func Started(ctx context.Context, c client.Client, pod *corev1.Pod) error {
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning}
	for _, ct := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ct.Name, Image: ct.Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		})
	}
	if err := c.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("report pod %s/%s started: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}
