// Package apiservertest starts a real kube-apiserver backed by a real etcd for tests, with stepflow's
// custom resource definitions installed. It wraps controller-runtime's envtest; the binaries come
// from scripts/kube-assets.sh, which installs Debian's etcd and builds kube-apiserver from the
// published Kubernetes modules (tools/kube-apiserver).
package apiservertest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/go-logr/logr"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// KubernetesVersion is the version of the API server the tests run against.
const KubernetesVersion = "v1.36.3"

// AssetsDir is where the etcd and kube-apiserver binaries are looked for: $STEPFLOW_KUBE_ASSETS,
// or the user's cache directory.
func AssetsDir() string {
	if dir := os.Getenv("STEPFLOW_KUBE_ASSETS"); dir != "" {
		return dir
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "stepflow", "kube-"+KubernetesVersion)
}

var quietOnce sync.Once

// ErrNoAssets says the binaries are missing, and how to get them.
var ErrNoAssets = errors.New("kube-apiserver or etcd not found: run scripts/kube-assets.sh (make kube-assets) first")

// CRDDir is the directory holding stepflow's CRD manifests (config/crd in the repository).
func CRDDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "config", "crd")
}

// Cluster is a running API server.
type Cluster struct {
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for the same administrator, for kubectl and
	// for the stepflow CLI.
	Kubeconfig string
	env        *envtest.Environment
	dir        string
	etcdDir    string
}

// Start starts etcd and kube-apiserver and installs the CRDs. Stop it when done.
func Start() (*Cluster, error) {
	// envtest logs through controller-runtime's logger, which complains with a stack trace
	// when nobody set it; the tests read the servers' state, not envtest's chatter.
	quietOnce.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	assets := AssetsDir()
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%w (looked in %s)", ErrNoAssets, assets)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{CRDDir()},
		ErrorIfCRDPathMissing: true,
	}
	// etcd's data lives in memory when /dev/shm is there: the tests and benchmarks measure
	// stepflow and the API server, not this machine's fsync (etcd 3.4 cannot turn it off).
	etcdDir := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if etcdDir, err = os.MkdirTemp("/dev/shm", "stepflow-etcd-"); err != nil {
			return nil, err
		}
		env.ControlPlane.Etcd = &envtest.Etcd{DataDir: etcdDir}
	}
	cfg, err := env.Start()
	if err != nil {
		if etcdDir != "" {
			_ = os.RemoveAll(etcdDir)
		}
		return nil, fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	c := &Cluster{Config: cfg, env: env, etcdDir: etcdDir}
	if err := c.writeKubeconfig(); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) writeKubeconfig() error {
	user, err := c.env.AddUser(envtest.User{Name: "stepflow-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add test user: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("render kubeconfig: %w", err)
	}
	dir, err := os.MkdirTemp("", "stepflow-apiservertest-")
	if err != nil {
		return err
	}
	c.dir = dir
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	return os.WriteFile(c.Kubeconfig, data, 0o600)
}

// Stop stops the API server and etcd and removes their data.
func (c *Cluster) Stop() error {
	err := c.env.Stop()
	for _, dir := range []string{c.dir, c.etcdDir} {
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
	}
	return err
}
