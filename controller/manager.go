package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cuev1alpha1 "github.com/stepflow/stepflow/api/cue/v1alpha1"
	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	crdstore "github.com/stepflow/stepflow/store/crd"
)

// ShardLabel assigns a WorkflowRun to one of several controllers, as KubeVela does.
const ShardLabel = crdstore.ShardLabel

// NewScheme returns a scheme with the core Kubernetes kinds and stepflow's.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, v1beta1.AddToScheme, cuev1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// CacheOptions limits what the manager's cache holds: with a shard ID only the WorkflowRuns,
// Applications and WorkflowSchedules labelled with it, of ConfigMaps only the runs' context ConfigMaps, and of Secrets only those
// of vela-system (where cluster credentials are).
func CacheOptions(shardID string) cache.Options {
	byObject := map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {Label: labels.SelectorFromSet(labels.Set{crdstore.LabelContext: "true"})},
		&corev1.Secret{}:    {Namespaces: map[string]cache.Config{v1alpha1.SystemNamespace: {}}},
	}
	if shardID != "" {
		byObject[&v1alpha1.WorkflowRun{}] = cache.ByObject{Label: labels.SelectorFromSet(labels.Set{ShardLabel: shardID})}
		byObject[&v1beta1.Application{}] = cache.ByObject{Label: labels.SelectorFromSet(labels.Set{ShardLabel: shardID})}
		byObject[&v1alpha1.WorkflowSchedule{}] = cache.ByObject{Label: labels.SelectorFromSet(labels.Set{ShardLabel: shardID})}
	}
	return cache.Options{ByObject: byObject}
}
