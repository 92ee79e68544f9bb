package application_test

import (
	"encoding/json"
	"testing"

	"github.com/stepflow/stepflow/api/v1beta1"
	"github.com/stepflow/stepflow/application"
)

// TestAppliedByReadsTheRunsRecord: what a delivery run applied is read from the variables its
// delivering steps wrote, each object once (the local cluster named "" or "local" alike),
// and other variables are left alone.
func TestAppliedByReadsTheRunsRecord(t *testing.T) {
	obj := func(cluster, kind, name, component string) application.Applied {
		return application.Applied{ManagedResource: v1beta1.ManagedResource{
			ClusterObjectReference: v1beta1.ClusterObjectReference{Cluster: cluster, Creator: "workflow",
				ObjectReference: v1beta1.ObjectReference{APIVersion: "apps/v1", Kind: kind, Namespace: "team", Name: name}},
			Component: component,
		}}
	}
	enc := func(list ...application.Applied) json.RawMessage {
		b, err := json.Marshal(list)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	vars := map[string]json.RawMessage{
		application.AppliedVar + "deploy-east": enc(obj("east", "Deployment", "api", "api"), obj("east", "Service", "api", "api")),
		application.AppliedVar + "apply-db":    enc(obj("", "Deployment", "db", "db")),
		application.AppliedVar + "apply-db2":   enc(obj("local", "Deployment", "db", "db")),
		"image":                                json.RawMessage(`"api:v1"`),
	}
	got, err := application.AppliedBy(vars)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range got {
		names = append(names, r.Cluster+"/"+r.Kind+"/"+r.Name+"@"+r.Component)
	}
	want := []string{"/Deployment/db@db", "east/Deployment/api@api", "east/Service/api@api"}
	if len(names) != len(want) {
		t.Fatalf("applied %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("applied %q, want %q", names, want)
		}
	}
	if _, err := application.AppliedBy(map[string]json.RawMessage{application.AppliedVar + "x": json.RawMessage(`{`)}); err == nil {
		t.Error("a broken record is read without an error")
	}
}
