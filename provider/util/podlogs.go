package util

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/step"
)

// podResource is one item of #Log's source.resources: the pod called Name, or the pods matching
// LabelSelector, or the pod of that name when it matches; in Namespace (else the run's) of
// Cluster ("" is the local one).
type podResource struct {
	Name          string            `json:"name"`
	Cluster       string            `json:"cluster"`
	Namespace     string            `json:"namespace"`
	LabelSelector map[string]string `json:"labelSelector"`
}

// localCluster is KubeVela's name of the local cluster, which "" names too.
const localCluster = "local"

// podLogVar is the prefix of the run variable where a step keeps what it has collected of
// pods' logs (podLogState), so that an evaluation adds only what the last one did not see.
const podLogVar = "stepflow.podlogs/"

// podLogState is what a step has collected of pods' logs over its evaluations.
type podLogState struct {
	// Lines and Bytes are what it added to its log, counted against the bounds.
	Lines int   `json:"lines"`
	Bytes int64 `json:"bytes"`
	// Full says the bounds were reached and the step's log said so: nothing more is read.
	Full bool `json:"full,omitempty"`
	// Capped says the log said that an item matched more pods than are read.
	Capped bool `json:"capped,omitempty"`
	// Read is, by container ("<pod uid>/<container>"), the last line read.
	Read map[string]logCursor `json:"read,omitempty"`
}

// logCursor is where the next read of a container starts: after the Same lines stamped Time.
type logCursor struct {
	Time time.Time `json:"time"`
	Same int       `json:"same,omitempty"`
}

// podLogs adds to the step's log what the pods of resources wrote since the step's last
// evaluation, within the step's bounds.
func (l *logger) podLogs(ctx context.Context, call *step.Call, level int, resources []podResource) error {
	if l.clusters == nil {
		return terminal("#Log", errors.New("source.resources reads pods' logs from a cluster, and none is configured (give stepflow one with --kubeconfig)"))
	}
	for i, r := range resources {
		if r.Name == "" && len(r.LabelSelector) == 0 {
			return terminal("#Log", fmt.Errorf("source.resources[%d] needs a name or a labelSelector", i))
		}
	}
	key := podLogVar + call.Step
	var state podLogState
	if raw, ok := call.Session.Var(key); ok {
		_ = json.Unmarshal(raw, &state) // an unreadable record starts again
	}
	if state.Full {
		return nil
	}
	read := map[string]logCursor{}
	for i, r := range resources {
		if r.Namespace == "" {
			r.Namespace = call.Run.Namespace
		}
		if r.Cluster == localCluster {
			r.Cluster = "" // so that its lines are not prefixed with a cluster's name
		}
		c, err := l.podClient(ctx, call.Run.Namespace, r.Cluster)
		if err != nil {
			return err
		}
		pods, err := l.pods(ctx, c, r)
		if err != nil {
			return kube.Failure(fmt.Sprintf("vela/util: #Log: source.resources[%d]: listing pods in %s", i, where(r)), err)
		}
		if len(pods) > l.maxPods {
			if !state.Capped {
				state.Capped = true
				call.Session.Log(level, fmt.Sprintf("pod logs: %d pods match source.resources[%d] in %s; only the first %d by name are read", len(pods), i, where(r), l.maxPods), nil)
			}
			pods = pods[:l.maxPods]
		}
		for _, pod := range pods {
			for _, container := range startedContainers(&pod) {
				id := string(pod.UID) + "/" + container
				cur, ok := read[id]
				if !ok {
					cur = state.Read[id]
				}
				if state.Full {
					continue // reached in this evaluation
				}
				cur, err := l.readContainer(ctx, call, c, &state, level, r.Cluster, &pod, container, cur)
				if err != nil {
					call.Session.Log(level, fmt.Sprintf("pod logs: %s: %v", prefixOf(r.Cluster, &pod, container), err), nil)
				}
				read[id] = cur
			}
		}
	}
	state.Read = read // the containers of pods that are gone are forgotten
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("vela/util: #Log: recording what was read of pods' logs: %w", err)
	}
	call.Session.SetVar(key, b)
	return nil
}

// podClient gives a client of the core API of the named cluster, for a run in namespace.
func (l *logger) podClient(ctx context.Context, namespace, cluster string) (corev1client.CoreV1Interface, error) {
	var cfg *rest.Config
	var err error
	if nc, ok := l.clusters.(NamespacedClusters); ok {
		cfg, err = nc.ConfigIn(ctx, namespace, cluster)
	} else {
		cfg, err = l.clusters.Config(ctx, cluster)
	}
	if err != nil {
		return nil, fmt.Errorf("vela/util: #Log: source.resources reads pods' logs: %w", err)
	}
	c, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, terminal("#Log", fmt.Errorf("a client of cluster %q: %w", cluster, err))
	}
	return c, nil
}

// pods lists the pods r names, sorted by name.
func (l *logger) pods(ctx context.Context, c corev1client.CoreV1Interface, r podResource) ([]corev1.Pod, error) {
	if len(r.LabelSelector) == 0 {
		pod, err := c.Pods(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil // not created yet, or gone: nothing to read
		}
		if err != nil {
			return nil, err
		}
		return []corev1.Pod{*pod}, nil
	}
	opts := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(r.LabelSelector).String()}
	if r.Name != "" {
		opts.FieldSelector = "metadata.name=" + r.Name
	}
	list, err := c.Pods(r.Namespace).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return list.Items, nil
}

// startedContainers names the containers of pod that have started, the init containers first:
// the others have no log yet.
func startedContainers(pod *corev1.Pod) []string {
	var out []string
	for _, statuses := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, s := range statuses {
			if s.State.Running != nil || s.State.Terminated != nil || s.LastTerminationState.Terminated != nil {
				out = append(out, s.Name)
			}
		}
	}
	return out
}

// stampLen bounds the length of the timestamp the API puts before each line (RFC 3339 with
// nanoseconds, and a space).
const stampLen = len("2006-01-02T15:04:05.999999999Z07:00 ")

// stampedLine is a line of a container's log and when it was written.
type stampedLine struct {
	at   time.Time
	text string
}

// readContainer adds the lines container wrote after cur to the step's log, the last of them
// when they are more than the step's bounds leave room for, and returns where the next read
// starts. It marks state full, and says so in the log, when the bounds are reached.
func (l *logger) readContainer(ctx context.Context, call *step.Call, c corev1client.CoreV1Interface, state *podLogState, level int, cluster string, pod *corev1.Pod, container string, cur logCursor) (logCursor, error) {
	roomLines, roomBytes := l.maxLines-state.Lines, l.maxBytes-state.Bytes
	if roomLines <= 0 || roomBytes <= 0 {
		state.Full = true // bounds lowered since the last evaluation
		return cur, nil
	}
	lines, err := l.fetchLog(ctx, c, pod, container, cur, roomLines, roomBytes)
	if err != nil || len(lines) == 0 {
		return cur, err
	}
	// Where the next read starts: after the last line read, kept or not.
	next := cur
	for _, line := range lines {
		if line.at.Equal(next.Time) {
			next.Same++
		} else {
			next = logCursor{Time: line.at, Same: 1}
		}
	}
	// The last lines that fit.
	first, size := len(lines), int64(0)
	for first > 0 && len(lines)-first < roomLines && size+int64(len(lines[first-1].text)) <= roomBytes {
		first--
		size += int64(len(lines[first].text))
	}
	prefix := prefixOf(cluster, pod, container)
	if first > 0 {
		call.Session.Log(level, fmt.Sprintf("pod logs: %d earlier lines of %s are left out: this step's log holds at most %d lines and %d bytes of pods' logs", first, prefix, l.maxLines, l.maxBytes), nil)
	}
	for _, line := range lines[first:] {
		call.Session.Log(level, "["+prefix+"] "+line.text, nil)
	}
	state.Lines += len(lines) - first
	state.Bytes += size
	if state.Lines >= l.maxLines || state.Bytes >= l.maxBytes {
		state.Full = true
		call.Session.Log(level, fmt.Sprintf("pod logs: this step's log holds the %d lines or %d bytes of pods' logs it may; later lines are not collected (read them with kubectl logs)", l.maxLines, l.maxBytes), nil)
	}
	return next, nil
}

// fetchLog reads the lines container wrote after cur, through the API server's pods/log: at
// most roomLines of them (the last), and as many bytes as the caller could keep of them several
// times over. A line the read cut short is left for the next read.
func (l *logger) fetchLog(ctx context.Context, c corev1client.CoreV1Interface, pod *corev1.Pod, container string, cur logCursor, roomLines int, roomBytes int64) ([]stampedLine, error) {
	tail := int64(roomLines)
	limit := 4*roomBytes + tail*int64(stampLen)
	opts := &corev1.PodLogOptions{Container: container, Timestamps: true, TailLines: &tail, LimitBytes: &limit}
	if !cur.Time.IsZero() {
		since := metav1.NewTime(cur.Time.Truncate(time.Second)) // the API takes whole seconds
		opts.SinceTime = &since
	}
	stream, err := c.Pods(pod.Namespace).GetLogs(pod.Name, opts).Stream(ctx)
	if apierrors.IsNotFound(err) {
		return nil, nil // the pod went away meanwhile
	}
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	body, err := io.ReadAll(io.LimitReader(stream, limit))
	if err != nil {
		return nil, fmt.Errorf("reading the log: %w", err)
	}
	body = body[:bytes.LastIndexByte(body, '\n')+1]
	var lines []stampedLine
	skip := cur.Same
	for raw := range strings.Lines(string(body)) {
		at, text := splitStamp(strings.TrimSuffix(raw, "\n"))
		switch {
		case at.Before(cur.Time):
			continue
		case at.Equal(cur.Time) && skip > 0:
			skip--
			continue
		}
		lines = append(lines, stampedLine{at, text})
	}
	return lines, nil
}

// splitStamp splits a line the API stamped into its time and its text; a line without a
// stamp has the zero time.
func splitStamp(line string) (time.Time, string) {
	stamp, text, ok := strings.Cut(line, " ")
	if !ok {
		stamp = line
	}
	at, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		return time.Time{}, line
	}
	return at, text
}

// prefixOf names a pod's container in the log, as kubectl logs --prefix does, with the cluster
// when it is not the local one.
func prefixOf(cluster string, pod *corev1.Pod, container string) string {
	s := "pod/" + pod.Name + "/" + container
	if cluster != "" {
		s = cluster + ": " + s
	}
	return s
}

// where names a resource's namespace and cluster in messages.
func where(r podResource) string {
	if r.Cluster == "" {
		return "namespace " + r.Namespace
	}
	return fmt.Sprintf("namespace %s of cluster %q", r.Namespace, r.Cluster)
}
