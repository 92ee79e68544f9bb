package store

import (
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/api/v1beta1"
)

// Scanner is a row of a query's result as both SQL stores read it: database/sql's *sql.Rows
// and pgx's pgx.CollectableRow have this method.
type Scanner interface {
	Scan(dest ...any) error
}

// ReadRecord reads a row of the columns key, version and data of a record.
func ReadRecord(rows Scanner) (Record, error) {
	var r Record
	err := rows.Scan(&r.Key, &r.Version, &r.Data)
	return r, err
}

// ReadDefinition reads a row whose one column is a stored definition's JSON.
func ReadDefinition(rows Scanner) (*v1beta1.WorkflowStepDefinition, error) {
	var data []byte
	if err := rows.Scan(&data); err != nil {
		return nil, err
	}
	d := new(v1beta1.WorkflowStepDefinition)
	if err := json.Unmarshal(data, d); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return d, nil
}

// ReadWorkflow reads a row of the columns namespace, name, object (the stored Workflow's
// JSON) and generation.
func ReadWorkflow(rows Scanner) (*v1alpha1.Workflow, error) {
	var ns, name string
	var data []byte
	var gen int64
	if err := rows.Scan(&ns, &name, &data, &gen); err != nil {
		return nil, err
	}
	return DecodeWorkflow(ns, name, data, gen)
}

// DecodeWorkflow is the stored Workflow namespace/name from its JSON, data, and its
// generation, kept in a column of its own.
func DecodeWorkflow(namespace, name string, data []byte, gen int64) (*v1alpha1.Workflow, error) {
	wf := new(v1alpha1.Workflow)
	if err := json.Unmarshal(data, wf); err != nil {
		return nil, fmt.Errorf("decode workflow %s/%s: %w", namespace, name, err)
	}
	wf.Generation = gen
	return wf, nil
}

// RunOrigin is the template (spec.workflowRef) and creation time (metadata.creationTimestamp)
// of a stored run's JSON, or "" and the zero time for what it cannot tell: what a store's
// migration fills its template and created columns with for runs stored before them.
func RunOrigin(data []byte) (template string, created time.Time) {
	var run struct {
		Object struct {
			Metadata struct {
				CreationTimestamp metav1.Time `json:"creationTimestamp"`
			} `json:"metadata"`
			Spec struct {
				WorkflowRef string `json:"workflowRef"`
			} `json:"spec"`
		} `json:"object"`
	}
	if err := json.Unmarshal(data, &run); err != nil {
		return "", time.Time{}
	}
	return run.Object.Spec.WorkflowRef, run.Object.Metadata.CreationTimestamp.Time
}

// ReadRunSummary reads a row of the query of ListRuns. Its start_time and end_time are
// read as T, the store's type for them, and made times by times, which gives the zero time
// for unset; its created, Unix nanoseconds, gives the zero time for 0.
func ReadRunSummary[T any](rows Scanner, times func(T) time.Time) (RunSummary, error) {
	var r RunSummary
	var start, end T
	var created int64
	c := &r.Steps
	if err := rows.Scan(&r.Namespace, &r.Name, &r.Version, &r.Phase, &r.Message, &start, &end,
		&c.Total, &c.Running, &c.Suspending, &c.Succeeded, &c.Failed, &c.Skipped,
		&r.Template, &created); err != nil {
		return r, err
	}
	r.StartTime, r.EndTime = times(start), times(end)
	if created != 0 {
		r.Created = time.Unix(0, created).UTC()
	}
	c.Pending = c.Total - c.Running - c.Suspending - c.Succeeded - c.Failed - c.Skipped
	return r, nil
}
