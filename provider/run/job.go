// job.go: the Kubernetes backend, a batch/v1 Job per execution of a step, followed over the
// step's evaluations.

package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/provider/kube"
	"github.com/stepflow/stepflow/provider/util"
	"github.com/stepflow/stepflow/step"
)

// The labels of a Job, besides kube's run labels (kube.LabelRunName, kube.LabelRunNamespace).
const (
	// LabelStep names the step that created the Job, when its name is a valid label value.
	LabelStep = "workflowrun.oam.dev/step-name"
	// LabelJobName is the label the Job controller puts on a Job's pods.
	LabelJobName = "batch.kubernetes.io/job-name"
)

// container is the name of the Job's one container.
const container = "run"

// MaxTerminationMessage is what Kubernetes keeps of a container's termination message, which
// carries a Job's outputs: outputs larger together fail the step.
const MaxTerminationMessage = 4096

// JobClusters gives the client and the REST config of a named cluster ("" is the local one);
// *cluster.Registry implements it.
type JobClusters interface {
	Client(ctx context.Context, name string) (client.Client, error)
	Config(ctx context.Context, name string) (*rest.Config, error)
}

// Jobs runs the #Run calls that give an image as Kubernetes Jobs in the step's cluster and the
// run's namespace. It does not hold an evaluation while a Job runs: it creates the Job and
// ends the evaluation waiting; each evaluation after reads the Job (through Objects, so that a
// change of it wakes the step) and its pod, adds the pod's new log lines to the step's log,
// and once the container has terminated returns its exit code and outputs.
type Jobs struct {
	// Objects reads the Job as vela/kube's #Read does (the ReadObserver is told).
	Objects *kube.Objects
	// Clusters reaches the clusters.
	Clusters JobClusters
	// Logs bounds the pod's lines in the step's log as #Log's source.resources (its Clusters
	// is set from Clusters).
	Logs util.Options
}

// jobVar is the prefix of the run variable where a step keeps its Job's record (jobRecord).
const jobVar = "stepflow.run/"

// jobRecord is what a step knows of its Job across evaluations.
type jobRecord struct {
	// Job is the Job's name: a record of another name is of another execution.
	Job string `json:"job"`
	// Created says this execution created it: gone, it was deleted before it ended.
	Created bool `json:"created,omitempty"`
	// Result is how it ended, once it has.
	Result *Result `json:"result,omitempty"`
}

func setRecord(call *step.Call, key string, rec *jobRecord) {
	if b, err := json.Marshal(rec); err == nil {
		call.Session.SetVar(key, b)
	}
}

// jobName is the Job of one execution of a call: <run>-<step>-<hash of the run, the execution
// and the call's path>, DNS-safe and at most 63 characters.
func jobName(call *step.Call) string {
	sum := sha256.Sum256([]byte(call.Run.Namespace + "/" + call.Run.Name + "\x00" + call.Execution + "\x00" + call.Path))
	hash := hex.EncodeToString(sum[:])[:10]
	prefix := dnsSafe(call.Run.Name + "-" + call.Step)
	if len(prefix) > 63-len(hash)-1 {
		prefix = strings.TrimRight(prefix[:63-len(hash)-1], "-")
	}
	if prefix == "" {
		return "run-" + hash
	}
	return prefix + "-" + hash
}

// dnsSafe lowers s and turns what a DNS label may not hold into dashes.
func dnsSafe(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}

// wrapper runs the program ("$@") and then writes the output files to the termination log:
// for each, its name, its length in bytes and its bytes. POSIX sh, wc and cat only.
const wrapper = `mkdir -p /stepflow/outputs /stepflow/work || exit 126
if [ -n "${STEPFLOW_SCRIPT+x}" ]; then printf '%s' "$STEPFLOW_SCRIPT" > /stepflow/script || exit 126; unset STEPFLOW_SCRIPT; fi
"$@"
code=$?
for n in $STEPFLOW_OUTPUT_NAMES; do
  f=/stepflow/outputs/$n
  if [ -f "$f" ]; then printf '%s\n%s\n' "$n" "$(($(wc -c < "$f")))"; cat "$f"; fi
done > /dev/termination-log
exit $code
`

// object is the Job for job, named name.
func (j *Jobs) object(call *step.Call, job *Job, name string) *batchv1.Job {
	labels := map[string]string{kube.LabelRunName: call.Run.Name, kube.LabelRunNamespace: call.Run.Namespace}
	if len(validation.IsValidLabelValue(call.Step)) == 0 {
		labels[LabelStep] = call.Step
	}
	env := []corev1.EnvVar{
		{Name: "HOME", Value: WorkDir},
		{Name: "STEPFLOW_OUTPUTS", Value: OutputsDir},
		{Name: "STEPFLOW_OUTPUT_NAMES", Value: strings.Join(job.Outputs, " ")},
	}
	if job.Script != "" {
		env = append(env, corev1.EnvVar{Name: "STEPFLOW_SCRIPT", Value: job.Script})
	}
	for _, e := range job.Env {
		k, v, _ := strings.Cut(e, "=")
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	for _, s := range job.SecretEnv {
		env = append(env, corev1.EnvVar{Name: s.Env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.Name}, Key: s.Key}}})
	}
	dir := job.WorkingDir
	if dir == "" {
		dir = WorkDir
	} else if !path.IsAbs(dir) {
		dir = path.Join(WorkDir, dir)
	}
	res := corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(job.Memory, resource.BinarySI)}
	if job.CPU > 0 {
		res[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(math.Ceil(job.CPU*1000)), resource.DecimalSI)
	}
	deadline := int64(math.Ceil(job.Timeout.Seconds()))
	zero := int32(0)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: call.Run.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:          &zero,
			ActiveDeadlineSeconds: &deadline,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name:                     container,
						Image:                    job.Image,
						Command:                  append([]string{"/bin/sh", "-c", wrapper, "stepflow"}, job.Argv...),
						Env:                      env,
						WorkingDir:               dir,
						Resources:                corev1.ResourceRequirements{Requests: res, Limits: res},
						TerminationMessagePath:   corev1.TerminationMessagePathDefault,
						TerminationMessagePolicy: corev1.TerminationMessageReadFile,
						VolumeMounts:             []corev1.VolumeMount{{Name: "stepflow", MountPath: "/stepflow"}},
					}},
					Volumes: []corev1.Volume{{Name: "stepflow", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
}

// follow creates the Job of this execution of call unless it exists, and returns how it ended,
// or nil with the step left waiting while it runs.
func (j *Jobs) follow(ctx context.Context, call *step.Call, job *Job) (*Result, error) {
	name := jobName(call)
	ns := call.Run.Namespace
	where := fmt.Sprintf("Job %s/%s", ns, name)
	if job.Cluster != "" {
		where += fmt.Sprintf(" of cluster %q", job.Cluster)
	}
	want := &unstructured.Unstructured{}
	want.SetAPIVersion("batch/v1")
	want.SetKind("Job")
	want.SetNamespace(ns)
	want.SetName(name)
	key := jobVar + call.Step
	var rec jobRecord
	if raw, ok := call.Session.Var(key); ok {
		_ = json.Unmarshal(raw, &rec) // an unreadable record is none
	}
	if rec.Job != name {
		rec = jobRecord{Job: name}
	}
	if rec.Result != nil {
		return rec.Result, nil // ended in an earlier evaluation, which may have deleted the Job
	}
	cl, err := kube.ClientFor(ctx, j.Clusters, ns, job.Cluster)
	if err != nil {
		return nil, fmt.Errorf("the %s: %w", where, err)
	}
	// A failure to read is waited out rather than returned: a retry would be another
	// execution, and start another Job beside this one.
	found, err := j.Objects.Get(ctx, call, job.Cluster, want)
	if err != nil {
		call.Session.Wait(fmt.Sprintf("reading the %s: %v", where, err))
		return nil, nil
	}
	if found == nil && rec.Created {
		return nil, terminal(fmt.Errorf("the %s was deleted before it ended", where))
	}
	if found == nil {
		err := cl.Create(ctx, j.object(call, job, name))
		if err != nil && !apierrors.IsAlreadyExists(err) {
			if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) {
				return nil, terminal(fmt.Errorf("creating the %s: %w", where, err))
			}
			return nil, fmt.Errorf("creating the %s: %w", where, err)
		}
		call.Session.Log(3, "vela/run: created the "+where, nil)
		rec.Created = true
		setRecord(call, key, &rec)
		call.Session.Wait("the " + where + " was created; waiting for its pod")
		return nil, nil
	}
	var bj batchv1.Job
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(found.Object, &bj); err != nil {
		return nil, fmt.Errorf("reading the %s: %w", where, err)
	}
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{LabelJobName: name}); err != nil {
		call.Session.Wait(fmt.Sprintf("listing the pods of the %s: %v", where, err))
		return nil, nil
	}
	var pod *corev1.Pod
	for i := range pods.Items {
		if metav1.IsControlledBy(&pods.Items[i], &bj) {
			pod = &pods.Items[i]
		}
	}
	if pod != nil {
		logs := j.Logs
		logs.Clusters = j.Clusters
		if err := util.PodLogs(ctx, call, logs, job.Cluster, ns, pod.Name); err != nil {
			call.Session.Log(3, fmt.Sprintf("vela/run: reading the log of pod %s: %v", pod.Name, err), nil)
		}
	}
	if res := j.ended(ctx, call, job, &bj, pod); res != nil {
		rec.Result = res
		setRecord(call, key, &rec)
		j.cleanup(ctx, call, cl, job, &bj, res, where)
		return res, nil
	}
	if pod == nil {
		call.Session.Wait("waiting for the pod of the " + where)
	} else {
		call.Session.Wait(fmt.Sprintf("the %s runs: pod %s is %s", where, pod.Name, pod.Status.Phase))
	}
	return nil, nil
}

// ended is how the Job ended, from its pod's container (its exit code and termination
// message) or, when it has none, the Job's conditions; nil while it runs.
func (j *Jobs) ended(ctx context.Context, call *step.Call, job *Job, bj *batchv1.Job, pod *corev1.Pod) *Result {
	if pod != nil {
		for _, s := range pod.Status.ContainerStatuses {
			if s.Name != container || s.State.Terminated == nil {
				continue
			}
			t := s.State.Terminated
			res := &Result{ExitCode: int(t.ExitCode)}
			if res.ExitCode != 0 {
				res.Tail = j.tail(ctx, job.Cluster, pod)
				return res
			}
			outputs, err := parseOutputs(t.Message, job.Outputs)
			if err != nil {
				res.ExitCode, res.Tail = -1, []string{"vela/run: " + err.Error()}
				return res
			}
			res.Outputs = outputs
			return res
		}
	}
	for _, c := range bj.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			// Complete, its pod gone or not reported: no termination message to read.
			res := &Result{}
			outputs, err := parseOutputs("", job.Outputs)
			if err != nil {
				res.ExitCode, res.Tail = -1, []string{"vela/run: the Job completed, and its pod's termination message is not to be read: " + err.Error()}
			}
			res.Outputs = outputs
			return res
		}
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			res := &Result{ExitCode: -1, TimedOut: c.Reason == batchv1.JobReasonDeadlineExceeded}
			if pod != nil {
				res.Tail = j.tail(ctx, job.Cluster, pod)
			}
			if !res.TimedOut {
				res.Tail = append(res.Tail, fmt.Sprintf("the Job failed: %s: %s", c.Reason, c.Message))
			}
			return res
		}
	}
	return nil
}

// tail is the last lines of the pod's log, read through the API server's pods/log.
func (j *Jobs) tail(ctx context.Context, cluster string, pod *corev1.Pod) []string {
	var cfg *rest.Config
	var err error
	if nc, ok := j.Clusters.(util.NamespacedClusters); ok {
		cfg, err = nc.ConfigIn(ctx, pod.Namespace, cluster)
	} else {
		cfg, err = j.Clusters.Config(ctx, cluster)
	}
	if err != nil {
		return nil
	}
	c, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil
	}
	n, limit := int64(TailLines), int64(TailLines*MaxLineBytes)
	stream, err := c.Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container, TailLines: &n, LimitBytes: &limit}).Stream(ctx)
	if err != nil {
		return nil
	}
	defer stream.Close()
	var lines []string
	readLines(io.LimitReader(stream, limit), func(s string) { lines = append(lines, s) })
	return lines
}

// cleanup deletes the Job, and its pod with it, when the policy says so.
func (j *Jobs) cleanup(ctx context.Context, call *step.Call, cl client.Client, job *Job, bj *batchv1.Job, res *Result, where string) {
	ok := res.ExitCode == 0 && !res.TimedOut
	if job.Cleanup == "never" || job.Cleanup == "onSuccess" && !ok {
		call.Session.Log(3, "vela/run: the "+where+" is kept (cleanup: "+job.Cleanup+")", nil)
		return
	}
	err := cl.Delete(ctx, bj, client.PropagationPolicy(metav1.DeletePropagationBackground), client.Preconditions{UID: &bj.UID})
	if err != nil && !apierrors.IsNotFound(err) {
		call.Session.Log(3, fmt.Sprintf("vela/run: deleting the %s: %v", where, err), nil)
	}
}

// parseOutputs reads the outputs the wrapper wrote to the termination message: for each file,
// its name, its length and its bytes. A message cut at MaxTerminationMessage is an error
// naming the bound.
func parseOutputs(msg string, names []string) (map[string]string, error) {
	out := map[string]string{}
	rest := msg
	for rest != "" {
		name, after, ok := strings.Cut(rest, "\n")
		size, body, ok2 := strings.Cut(after, "\n")
		n, err := strconv.Atoi(size)
		if !ok || !ok2 || err != nil || n < 0 || n > len(body) {
			if len(msg) >= MaxTerminationMessage-1 {
				return nil, fmt.Errorf("the outputs are larger than %d bytes together, what Kubernetes keeps of a container's termination message, which carries them", MaxTerminationMessage)
			}
			return nil, fmt.Errorf("the container's termination message is not the outputs stepflow's wrapper writes (did the command write /dev/termination-log?)")
		}
		out[name] = strings.TrimSuffix(body[:n], "\n")
		rest = body[n:]
	}
	for _, name := range names {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("the command wrote no output %s (%s/%s)", name, OutputsDir, name)
		}
	}
	return out, nil
}
