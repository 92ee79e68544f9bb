// Package cluster is the registry of the Kubernetes clusters a workflow step may name in its
// `cluster` parameter. The empty name (and "local", as in KubeVela) is the cluster stepflow runs
// against; other names come from a kubeconfig file whose contexts are the cluster names (the
// CLI's and the server's --clusters), and, in Kubernetes mode, from the cluster Secrets KubeVela
// keeps in vela-system (labelled cluster.core.oam.dev/cluster-credential-type).
//
// Clients are built on first use and cached; a client built from a Secret is rebuilt when the
// Secret's resourceVersion changes, so rotated credentials take effect without a restart.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Names and keys KubeVela (and its cluster-gateway) use for cluster Secrets.
const (
	// LocalName is KubeVela's name for the cluster it runs in; it means the same as "".
	LocalName = "local"
	// DefaultSecretNamespace is where cluster Secrets are kept.
	DefaultSecretNamespace = v1alpha1.SystemNamespace
	// LabelCredentialType marks a Secret as a cluster Secret; its value is X509Certificate or
	// ServiceAccountToken (or anything else for a Secret holding a kubeconfig).
	LabelCredentialType = "cluster.core.oam.dev/cluster-credential-type"
	// The data keys of a cluster Secret: the API server's URL, its CA bundle, a client
	// certificate and key, a bearer token, or a whole kubeconfig.
	KeyEndpoint   = "endpoint"
	KeyCA         = "ca.crt"
	KeyCert       = "tls.crt"
	KeyKey        = "tls.key"
	KeyToken      = "token"
	KeyKubeconfig = "kubeconfig"
)

// DefaultTimeout bounds one request to a cluster when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// SecretReader reads cluster Secrets. A controller-runtime client satisfies it; the controller
// passes its manager's cached client, so a lookup costs no API request.
type SecretReader interface {
	Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error
	List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error
}

// KubeconfigStore holds clusters as kubeconfig documents, each with a version that changes
// when the document does.
type KubeconfigStore interface {
	// Kubeconfig returns the document of cluster name, or an error wrapping engine.ErrNotFound.
	Kubeconfig(ctx context.Context, name string) (data []byte, version string, err error)
}

// Options configure a Registry; the zero value knows only the local cluster.
type Options struct {
	// File is a kubeconfig file whose context names are cluster names. It is read once, on the
	// first lookup that needs it.
	File string
	// Secrets reads cluster Secrets; nil means clusters come from File only.
	Secrets SecretReader
	// Kubeconfigs holds clusters as kubeconfig documents (those stored through the server's
	// API); nil holds none. They are looked up after File and before Secrets.
	Kubeconfigs KubeconfigStore
	// SecretNamespace is where cluster Secrets are looked for; "" means vela-system.
	SecretNamespace string
	// QPS and Burst limit the requests of each client; zero keeps client-go's defaults (5, 10).
	QPS   float32
	Burst int
	// Timeout bounds one request; zero means DefaultTimeout.
	Timeout time.Duration
	// WrapTransport, when set, wraps the transport of every cluster's client and REST config
	// (to count or trace their requests).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Scheme maps Go types to kinds for typed objects; nil means client-go's scheme. Unstructured
	// objects work with any scheme.
	Scheme *runtime.Scheme
}

// Registry resolves cluster names to REST configs and cached clients. It is safe for
// concurrent use.
type Registry struct {
	local *rest.Config
	opts  Options

	fileOnce sync.Once
	file     map[string]*rest.Config
	fileErr  error

	mu      sync.Mutex
	entries map[string]*entry
}

// entry is a resolved cluster: version tells whether it is still current (a Secret's
// resourceVersion), client is built on first use.
type entry struct {
	version string
	config  *rest.Config
	client  client.Client
	// server is the cluster's Kubernetes version, read on first use.
	server *version.Info
}

// New returns a registry whose local cluster ("" or "local") is reached with local; nil means
// there is none, and naming it is an error.
func New(local *rest.Config, opts Options) *Registry {
	if opts.SecretNamespace == "" {
		opts.SecretNamespace = DefaultSecretNamespace
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Scheme == nil {
		opts.Scheme = clientgoscheme.Scheme
	}
	return &Registry{local: local, opts: opts, entries: map[string]*entry{}}
}

// UnknownError says a cluster name is not in the registry.
type UnknownError struct {
	Name string
	// Sources says where clusters were looked for.
	Sources string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("cluster %q is not registered (clusters come from %s)", e.Name, e.Sources)
}

// Config returns a copy of the REST config of the named cluster. An unknown name is an
// engine.Terminal error wrapping *UnknownError.
func (r *Registry) Config(ctx context.Context, name string) (*rest.Config, error) {
	e, err := r.resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	return rest.CopyConfig(e.config), nil
}

// Client returns a client of the named cluster that works with typed and unstructured objects,
// with a REST mapper that discovers a kind on first use. Clients are cached.
func (r *Registry) Client(ctx context.Context, name string) (client.Client, error) {
	e, err := r.resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.client != nil {
		return e.client, nil
	}
	hc, err := rest.HTTPClientFor(e.config)
	if err != nil {
		return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("cluster %q: %w", display(name), err))
	}
	mapper, err := apiutil.NewDynamicRESTMapper(e.config, hc)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: REST mapper: %w", display(name), err)
	}
	c, err := client.New(e.config, client.Options{HTTPClient: hc, Scheme: r.opts.Scheme, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", display(name), err)
	}
	e.client = c
	return c, nil
}

// ServerVersion returns the named cluster's Kubernetes version as its discovery (/version)
// reports it. It is read once per cluster, and again when the cluster's config changes (a
// rotated Secret); an error is not kept, so the next call asks again.
func (r *Registry) ServerVersion(ctx context.Context, name string) (*version.Info, error) {
	e, err := r.resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	known := e.server
	r.mu.Unlock()
	if known != nil {
		return known, nil
	}
	dc, err := discovery.NewDiscoveryClientForConfig(e.config)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: discovery: %w", display(name), err)
	}
	body, err := dc.RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return nil, fmt.Errorf("cluster %q: reading its version: %w", display(name), err)
	}
	info := &version.Info{}
	if err := json.Unmarshal(body, info); err != nil {
		return nil, fmt.Errorf("cluster %q: reading its version: %w", display(name), err)
	}
	r.mu.Lock()
	e.server = info
	r.mu.Unlock()
	return info, nil
}

// Names lists the named clusters, sorted: the contexts of the file and the cluster Secrets.
// The local cluster is not listed.
func (r *Registry) Names(ctx context.Context) ([]string, error) {
	var names []string
	if r.opts.File != "" {
		file, err := r.loadFile()
		if err != nil {
			return nil, err
		}
		for n := range file {
			names = append(names, n)
		}
	}
	if r.opts.Secrets != nil {
		var list corev1.SecretList
		if err := r.opts.Secrets.List(ctx, &list, client.InNamespace(r.opts.SecretNamespace), client.HasLabels{LabelCredentialType}); err != nil {
			return nil, fmt.Errorf("listing cluster Secrets in %s: %w", r.opts.SecretNamespace, err)
		}
		for _, s := range list.Items {
			names = append(names, s.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// Labels returns a named cluster's labels, which topology policies select clusters by: a
// cluster Secret's labels; none for the local cluster and a kubeconfig's contexts.
func (r *Registry) Labels(ctx context.Context, name string) (map[string]string, error) {
	if name == "" || name == LocalName || r.opts.Secrets == nil {
		return nil, nil
	}
	if r.opts.File != "" {
		file, err := r.loadFile()
		if err != nil {
			return nil, err
		}
		if _, ok := file[name]; ok {
			return nil, nil
		}
	}
	var s corev1.Secret
	err := r.opts.Secrets.Get(ctx, client.ObjectKey{Namespace: r.opts.SecretNamespace, Name: name}, &s)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("cluster %q: reading its Secret in %s: %w", name, r.opts.SecretNamespace, err)
	}
	return s.Labels, nil
}

// resolve finds the cluster's entry, building or rebuilding it when needed.
func (r *Registry) resolve(ctx context.Context, name string) (*entry, error) {
	if name == "" || name == LocalName {
		return r.cached("", "local", func() (*rest.Config, error) {
			if r.local == nil {
				return nil, engine.Terminal(v1alpha1.ReasonExecute, errors.New("no local cluster is configured (give a kubeconfig)"))
			}
			return r.local, nil
		})
	}
	if r.opts.File != "" {
		file, err := r.loadFile()
		if err != nil {
			return nil, err
		}
		if cfg, ok := file[name]; ok {
			return r.cached(name, "file", func() (*rest.Config, error) { return cfg, nil })
		}
	}
	if r.opts.Kubeconfigs != nil {
		data, version, err := r.opts.Kubeconfigs.Kubeconfig(ctx, name)
		switch {
		case errors.Is(err, engine.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("cluster %q: reading its kubeconfig: %w", name, err)
		default:
			return r.cached(name, "stored/"+version, func() (*rest.Config, error) {
				cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
				if err != nil {
					return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("cluster %q: its stored kubeconfig: %w", name, err))
				}
				return cfg, nil
			})
		}
	}
	if r.opts.Secrets != nil {
		var s corev1.Secret
		err := r.opts.Secrets.Get(ctx, client.ObjectKey{Namespace: r.opts.SecretNamespace, Name: name}, &s)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("cluster %q: reading its Secret in %s: %w", name, r.opts.SecretNamespace, err)
		case s.Labels[LabelCredentialType] == "":
			// A Secret of that name that is not a cluster Secret.
		default:
			return r.cached(name, "secret/"+s.ResourceVersion, func() (*rest.Config, error) {
				cfg, err := secretConfig(&s)
				if err != nil {
					return nil, engine.Terminal(v1alpha1.ReasonExecute, fmt.Errorf("cluster %q: Secret %s/%s: %w", name, s.Namespace, s.Name, err))
				}
				return cfg, nil
			})
		}
	}
	return nil, engine.Terminal(v1alpha1.ReasonExecute, &UnknownError{Name: name, Sources: r.sources()})
}

// cached returns the entry for name at version, building it with build when it is missing or
// older.
func (r *Registry) cached(name, version string, build func() (*rest.Config, error)) (*entry, error) {
	r.mu.Lock()
	e, ok := r.entries[name]
	r.mu.Unlock()
	if ok && e.version == version {
		return e, nil
	}
	cfg, err := build()
	if err != nil {
		return nil, err
	}
	e = &entry{version: version, config: r.tune(cfg)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.entries[name]; ok && old.version == version {
		return old, nil // built concurrently: keep the first, and its client
	}
	r.entries[name] = e
	return e, nil
}

// tune applies the registry's limits to a copy of cfg.
func (r *Registry) tune(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	if r.opts.QPS > 0 {
		cfg.QPS = r.opts.QPS
	}
	if r.opts.Burst > 0 {
		cfg.Burst = r.opts.Burst
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = r.opts.Timeout
	}
	if cfg.WarningHandler == nil && cfg.WarningHandlerWithContext == nil {
		cfg.WarningHandler = rest.NoWarnings{}
	}
	if r.opts.WrapTransport != nil {
		cfg.Wrap(r.opts.WrapTransport)
	}
	return cfg
}

func (r *Registry) sources() string {
	var s []string
	if r.opts.File != "" {
		s = append(s, "the contexts of "+r.opts.File)
	}
	if r.opts.Kubeconfigs != nil {
		s = append(s, "the stored clusters")
	}
	if r.opts.Secrets != nil {
		s = append(s, "Secrets in "+r.opts.SecretNamespace+" labelled "+LabelCredentialType)
	}
	switch len(s) {
	case 0:
		return `nowhere: only the local cluster "" is known; give a file of named kubeconfig contexts with --clusters`
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// loadFile reads the clusters file once.
func (r *Registry) loadFile() (map[string]*rest.Config, error) {
	r.fileOnce.Do(func() {
		r.file, r.fileErr = LoadKubeconfigContexts(r.opts.File)
		if r.fileErr != nil {
			r.fileErr = engine.Terminal(v1alpha1.ReasonExecute, r.fileErr)
		}
	})
	return r.file, r.fileErr
}

// LoadKubeconfigContexts reads a kubeconfig file and returns the REST config of each of its
// contexts, by context name.
func LoadKubeconfigContexts(path string) (map[string]*rest.Config, error) {
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("clusters file %s: %w", path, err)
	}
	out := make(map[string]*rest.Config, len(kc.Contexts))
	for name := range kc.Contexts {
		cfg, err := clientcmd.NewNonInteractiveClientConfig(*kc, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("clusters file %s: context %q: %w", path, name, err)
		}
		out[name] = cfg
	}
	return out, nil
}

// secretConfig builds the REST config a cluster Secret describes: a whole kubeconfig under
// "kubeconfig" (its current context), or cluster-gateway's keys: endpoint, ca.crt, and either
// tls.crt with tls.key or token.
func secretConfig(s *corev1.Secret) (*rest.Config, error) {
	if kc, ok := s.Data[KeyKubeconfig]; ok {
		cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
		if err != nil {
			return nil, fmt.Errorf("data key %s: %w", KeyKubeconfig, err)
		}
		return cfg, nil
	}
	endpoint := string(s.Data[KeyEndpoint])
	if endpoint == "" {
		return nil, fmt.Errorf("no %q nor %q data key", KeyEndpoint, KeyKubeconfig)
	}
	cfg := &rest.Config{Host: endpoint}
	cfg.CAData = s.Data[KeyCA]
	switch {
	case len(s.Data[KeyCert]) > 0 && len(s.Data[KeyKey]) > 0:
		cfg.CertData, cfg.KeyData = s.Data[KeyCert], s.Data[KeyKey]
	case len(s.Data[KeyToken]) > 0:
		cfg.BearerToken = string(s.Data[KeyToken])
	default:
		return nil, fmt.Errorf("no credentials: give %s and %s, or %s", KeyCert, KeyKey, KeyToken)
	}
	return cfg, nil
}

// display names a cluster in messages.
func display(name string) string {
	if name == "" {
		return LocalName
	}
	return name
}

// LocalConfig finds the REST config of the local cluster as kubectl does: the kubeconfig file
// at path when given, else $KUBECONFIG or ~/.kube/config, else the in-cluster service account.
func LocalConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if path == "" {
		if in, inErr := rest.InClusterConfig(); inErr == nil {
			return in, nil
		}
	}
	if path != "" {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return nil, fmt.Errorf("no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a cluster: %w", err)
}
