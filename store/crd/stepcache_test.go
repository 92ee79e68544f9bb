package crd_test

import (
	"testing"

	"github.com/stepflow/stepflow/store/crd"
	"github.com/stepflow/stepflow/store/storetest"
)

// The step cache of Kubernetes mode passes the checks of the SQL stores' on a real API server.
func TestStepCacheInConfigMaps(t *testing.T) {
	c := newClient(t)
	for _, ns := range []string{"a", "b"} {
		freshNamespace(t, c, ns)
	}
	storetest.StepCache(t, &crd.StepCache{Client: c, MaxEntries: 20})
}
