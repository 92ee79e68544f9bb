package apiservertest

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NeverReady is a text that, in a Deployment's first container's image, keeps MarkReady and
// KeepReady from marking it ready.
const NeverReady = "never-ready"

// MarkReady stands in for kube-controller-manager, the kubelets and an ingress controller, none
// of which run in the tests: until the test ends it does what KeepReady does.
func MarkReady(t testing.TB, c client.Client, namespaces ...string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		KeepReady(ctx, c, namespaces...)
	}()
}

// KeepReady stands in for kube-controller-manager, the kubelets and an ingress controller until
// ctx ends: every 50 ms it sets the status of the Deployments in the namespaces as the
// Deployment controller does once their pods run (all replicas ready at the Deployment's
// generation), unless their image holds NeverReady, and gives each Ingress an address as an
// ingress controller does.
func KeepReady(ctx context.Context, c client.Client, namespaces ...string) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, ns := range namespaces {
			markReady(ctx, c, ns)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func markReady(ctx context.Context, c client.Client, ns string) {
	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps, client.InNamespace(ns)); err == nil {
		for i := range deps.Items {
			d := &deps.Items[i]
			if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 && strings.Contains(cs[0].Image, NeverReady) {
				continue
			}
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			if d.Status.ObservedGeneration == d.Generation && d.Status.ReadyReplicas == want && d.Status.UpdatedReplicas == want {
				continue
			}
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: want, ReadyReplicas: want, UpdatedReplicas: want, AvailableReplicas: want}
			_ = c.Status().Update(ctx, d)
		}
	}
	var ings networkingv1.IngressList
	if err := c.List(ctx, &ings, client.InNamespace(ns)); err == nil {
		for i := range ings.Items {
			in := &ings.Items[i]
			if len(in.Status.LoadBalancer.Ingress) > 0 {
				continue
			}
			in.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.7"}}
			_ = c.Status().Update(ctx, in)
		}
	}
}
