// Package util supplies the CUE package vela/util: #Log writes to the step's log (data, the
// text a URL returns, or what pods wrote to their logs), #ConvertString turns bytes into a
// string and #PatchK8sObject applies a JSON merge patch to an object.
//
// #Log's source.resources reads pods' logs through the API server (pods/log) of a cluster of
// Options.Clusters. Each evaluation of the step adds what the containers wrote since the last
// one, within the step's bounds (Options.MaxPodLogLines, MaxPodLogBytes); what it read is kept
// in the run variable stepflow.podlogs/<step>.
package util

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"time"

	"k8s.io/client-go/rest"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/step"
)

//go:embed util.cue
var source string

// Defaults used when the corresponding Options field is zero.
const (
	DefaultMaxSourceBytes = 1 << 20
	DefaultSourceTimeout  = 3 * time.Second
	DefaultMaxPodLogLines = 1000
	DefaultMaxPodLogBytes = 256 << 10
	DefaultMaxPods        = 20
)

// Clusters gives the REST config of a cluster by name ("" is the local cluster);
// *cluster.Registry implements it. An unknown name should be an engine.Terminal error.
type Clusters interface {
	Config(ctx context.Context, name string) (*rest.Config, error)
}

// NamespacedClusters are Clusters of which some are for the runs of some namespaces only
// (the server's stored clusters); ConfigIn is Config for a run in namespace.
type NamespacedClusters interface {
	Clusters
	ConfigIn(ctx context.Context, namespace, name string) (*rest.Config, error)
}

// Options configure the provider; the zero value works.
type Options struct {
	// Client fetches a #Log source URL; nil means a client with Go's default transport, which
	// verifies TLS certificates.
	Client *http.Client
	// MaxSourceBytes bounds how much of a source URL's body goes into the log; the rest is
	// dropped and the entry says so. 0 means DefaultMaxSourceBytes.
	MaxSourceBytes int64
	// SourceTimeout bounds fetching a source URL; 0 means DefaultSourceTimeout.
	SourceTimeout time.Duration
	// Clusters reaches the clusters whose pods' logs source.resources reads; nil means
	// source.resources fails the step saying no cluster is configured.
	Clusters Clusters
	// MaxPodLogLines and MaxPodLogBytes bound the lines, and the bytes of their text, that
	// source.resources adds to one step's log over all its evaluations; when a read has more,
	// its last lines are kept. 0 means DefaultMaxPodLogLines and DefaultMaxPodLogBytes.
	MaxPodLogLines int
	MaxPodLogBytes int64
	// MaxPods bounds the pods whose logs one item of source.resources reads (the first by
	// name); 0 means DefaultMaxPods.
	MaxPods int
}

// Register adds the package (import path "vela/util") and its actions util.log, util.string
// and util.patch-k8s-object to r.
func Register(r *step.Registry, opts Options) {
	l := newLogger(opts)
	r.AddPackage(step.Package{Path: "vela/util", Source: source})
	r.Register(step.Action{Provider: "util", Do: "log", Run: l.log, Local: logsData})
	r.Register(step.Action{Provider: "util", Do: "string", Run: convertString, Local: step.Always, LegacyOutputs: []string{"str"}})
	r.Register(step.Action{Provider: "util", Do: "patch-k8s-object", Run: patchK8sObject, Local: step.Always, LegacyOutputs: []string{"result"}})
}

// PodLogs adds to the step's log what the containers of the pod called name, in namespace of
// cluster ("" the local one), wrote since the step's last evaluation, as #Log's
// source.resources does: at level 3, within opts' bounds for the step, what was read kept in
// the same run variable. Other providers that run pods (vela/run's Job) show their logs so.
func PodLogs(ctx context.Context, call *step.Call, opts Options, cluster, namespace, name string) error {
	return newLogger(opts).podLogs(ctx, call, 3, []podResource{{Name: name, Cluster: cluster, Namespace: namespace}})
}

// newLogger is the #Log of opts, their zero fields defaulted.
func newLogger(opts Options) *logger {
	l := &logger{
		client: opts.Client, maxSource: opts.MaxSourceBytes, timeout: opts.SourceTimeout,
		clusters: opts.Clusters, maxLines: opts.MaxPodLogLines, maxBytes: opts.MaxPodLogBytes, maxPods: opts.MaxPods,
	}
	if l.client == nil {
		l.client = &http.Client{}
	}
	l.maxSource = cmp.Or(max(l.maxSource, 0), DefaultMaxSourceBytes)
	l.timeout = cmp.Or(max(l.timeout, 0), DefaultSourceTimeout)
	l.maxLines = cmp.Or(max(l.maxLines, 0), DefaultMaxPodLogLines)
	l.maxBytes = cmp.Or(max(l.maxBytes, 0), DefaultMaxPodLogBytes)
	l.maxPods = cmp.Or(max(l.maxPods, 0), DefaultMaxPods)
	return l
}

// logsData says a #Log call logs its data alone: with a source it reads a URL or resources.
func logsData(params map[string]any) bool {
	_, hasSource := params["source"]
	return !hasSource
}

// logger runs #Log.
type logger struct {
	client    *http.Client
	maxSource int64
	timeout   time.Duration
	clusters  Clusters
	maxLines  int
	maxBytes  int64
	maxPods   int
}

type logParams struct {
	Data   json.RawMessage `json:"data"`
	Level  *int            `json:"level"`
	Source *struct {
		URL       *string       `json:"url"`
		Resources []podResource `json:"resources"`
	} `json:"source"`
}

// log writes data, then the source URL's text or the pods' logs, to the step's log: a string as
// the entry's message, a struct as its data, a line of a pod's log as an entry of its own.
func (l *logger) log(ctx context.Context, call *step.Call) (any, error) {
	var in logParams
	if err := call.Decode(&in); err != nil {
		return nil, terminal("#Log", err)
	}
	if call.Session == nil {
		return nil, errors.New("vela/util: #Log: the call has no session to log to")
	}
	level := 3
	if in.Level != nil {
		level = *in.Level
	}
	if len(in.Data) > 0 && string(in.Data) != "null" {
		var text string
		if err := json.Unmarshal(in.Data, &text); err == nil {
			call.Session.Log(level, text, nil)
		} else {
			var data map[string]any
			if err := json.Unmarshal(in.Data, &data); err != nil {
				return nil, terminal("#Log", errors.New("parameter data: want a string or a struct"))
			}
			call.Session.Log(level, "", data)
		}
	}
	if in.Source != nil && in.Source.URL != nil {
		text, truncated, err := l.fetch(ctx, *in.Source.URL)
		if err != nil {
			return nil, err
		}
		data := map[string]any{"url": *in.Source.URL}
		if truncated {
			data["truncatedAfterBytes"] = l.maxSource
		}
		call.Session.Log(level, text, data)
	}
	if in.Source != nil && len(in.Source.Resources) > 0 {
		if err := l.podLogs(ctx, call, level, in.Source.Resources); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// fetch reads up to maxBytes of what a GET of rawURL returns, and whether there was more.
func (l *logger) fetch(ctx context.Context, rawURL string) (text string, truncated bool, err error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false, terminal("#Log", fmt.Errorf("source.url %q is not an absolute http or https URL", rawURL))
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", false, terminal("#Log", fmt.Errorf("source.url: %w", err))
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return "", false, fmt.Errorf("vela/util: #Log: fetching source.url: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", false, fmt.Errorf("vela/util: #Log: fetching source.url %s: status %s", u.Redacted(), resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, l.maxSource+1))
	if err != nil {
		return "", false, fmt.Errorf("vela/util: #Log: reading source.url %s: %w", u.Redacted(), err)
	}
	if int64(len(b)) > l.maxSource {
		return string(b[:l.maxSource]), true, nil
	}
	return string(b), false, nil
}

// convertString runs #ConvertString. CUE bytes reach it as []byte, or in their JSON form, a
// base64 string; both decode here.
func convertString(_ context.Context, call *step.Call) (any, error) {
	var in struct {
		BT *[]byte `json:"bt"`
	}
	if err := call.Decode(&in); err != nil {
		return nil, terminal("#ConvertString", err)
	}
	if in.BT == nil {
		return nil, terminal("#ConvertString", errors.New("parameter bt is required"))
	}
	return map[string]any{"str": string(*in.BT)}, nil
}

// patchK8sObject runs #PatchK8sObject.
func patchK8sObject(_ context.Context, call *step.Call) (any, error) {
	var in struct {
		Value map[string]any `json:"value"`
		Patch map[string]any `json:"patch"`
	}
	if err := call.Decode(&in); err != nil {
		return nil, terminal("#PatchK8sObject", err)
	}
	if in.Value == nil {
		return nil, terminal("#PatchK8sObject", errors.New("parameter value: want an object"))
	}
	if in.Patch == nil {
		return nil, terminal("#PatchK8sObject", errors.New("parameter patch: want an object"))
	}
	return map[string]any{"result": mergePatch(in.Value, in.Patch)}, nil
}

// mergePatch applies patch to target as a JSON merge patch (RFC 7386) and returns the result;
// neither argument is modified. Objects merge key by key, a null in the patch removes the key,
// and any other patch value, lists included, replaces the target's.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, _ := target.(map[string]any)
	out := make(map[string]any, len(t)+len(p))
	maps.Copy(out, t)
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}

func terminal(action string, err error) error {
	return engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("vela/util: %s: %w", action, err))
}
