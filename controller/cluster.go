package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/definitions"
	"github.com/stepflow/stepflow/step"
	kubestore "github.com/stepflow/stepflow/store/kube"
)

// SystemNamespace is where step types shared by every namespace live, as in KubeVela.
const SystemNamespace = "vela-system"

// ShardLabel assigns a WorkflowRun to one of several controllers, as KubeVela does.
const ShardLabel = kubestore.ShardLabel

// NewScheme returns a scheme with the core Kubernetes kinds and stepflow's.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, v1beta1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// CacheOptions limits what the manager's cache holds: with a shard ID only the WorkflowRuns
// labelled with it, of ConfigMaps only the runs' context ConfigMaps, and of Secrets only those
// of vela-system (where cluster credentials are).
func CacheOptions(shardID string) cache.Options {
	byObject := map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {Label: labels.SelectorFromSet(labels.Set{kubestore.LabelContext: "true"})},
		&corev1.Secret{}:    {Namespaces: map[string]cache.Config{SystemNamespace: {}}},
	}
	if shardID != "" {
		byObject[&v1alpha1.WorkflowRun{}] = cache.ByObject{Label: labels.SelectorFromSet(labels.Set{ShardLabel: shardID})}
	}
	return cache.Options{ByObject: byObject}
}

// Definitions finds step types as KubeVela does: WorkflowStepDefinitions in the run's namespace,
// then in vela-system, then the built-ins. Pass the manager's cache, so a lookup costs no request.
func Definitions(r client.Reader) step.Definitions { return definitionLookup{r} }

type definitionLookup struct{ r client.Reader }

// Template implements step.Definitions.
func (d definitionLookup) Template(ctx context.Context, namespace, typ string) (string, error) {
	for _, ns := range []string{namespace, SystemNamespace} {
		var def v1beta1.WorkflowStepDefinition
		err := d.r.Get(ctx, client.ObjectKey{Namespace: ns, Name: typ}, &def)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("step type %q: %w", typ, err)
		}
		if def.Spec.Schematic == nil || def.Spec.Schematic.CUE == nil {
			return "", fmt.Errorf("step type %q: WorkflowStepDefinition %s/%s has no spec.schematic.cue.template", typ, ns, typ)
		}
		return def.Spec.Schematic.CUE.Template, nil
	}
	if t, ok := definitions.Template(typ); ok {
		return t, nil
	}
	return "", fmt.Errorf("step type %q: %w (looked in namespace %q, %s and the built-ins)", typ, step.ErrUnknownType, namespace, SystemNamespace)
}
