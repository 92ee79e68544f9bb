package crd

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// A run's large values (engine.Run.SpillVars) are kept in ConfigMaps of their own, labelled
// LabelBlob and owned by the WorkflowRun, so that Kubernetes' garbage collector deletes them
// with it (and the controller deletes them itself when it deletes a run: DeleteBlobs). A
// value is split into parts of at most blobPart bytes, one ConfigMap each (binaryData, key
// blobKey), named by the value's hash and the part's number: a ConfigMap holds at most 1 MiB.
// They are ConfigMaps, as the context ConfigMap that holds the other variables is, whether or
// not the run has sensitive values: a run's variables hold them in clear wherever they are.
const (
	// LabelBlob marks the ConfigMaps holding parts of a run's large variables.
	LabelBlob = "workflowrun.oam.dev/blob"
	// annotationBlobHash is the full hash of the value a blob ConfigMap holds a part of.
	annotationBlobHash = "workflowrun.oam.dev/blob-hash"
	blobKey            = "value"
	blobPart           = 768 << 10
)

// blobName is the name of part i of the blob hash of run.
func blobName(run, hash string, i int) string {
	return fmt.Sprintf("workflow-%s-blob-%s-%d", run, hash[:min(len(hash), 20)], i)
}

// blobParts is how many parts a value of n bytes takes.
func blobParts(n int) int {
	return max(1, (n+blobPart-1)/blobPart)
}

// writeBlobs creates the ConfigMaps of the new blobs of a run, owned by it (base); a part
// there already is taken as written, its name being its content's.
func (s *Store) writeBlobs(ctx context.Context, key engine.Key, base *v1alpha1.WorkflowRun, blobs []engine.Blob) error {
	for _, b := range blobs {
		for i := range blobParts(len(b.Data)) {
			part := b.Data[i*blobPart : min(len(b.Data), (i+1)*blobPart)]
			cm := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{
					Name: blobName(key.Name, b.Hash, i), Namespace: key.Namespace,
					Labels:      map[string]string{LabelBlob: "true", LabelRunName: key.Name, LabelRunNamespace: key.Namespace},
					Annotations: map[string]string{annotationBlobHash: b.Hash},
				},
				BinaryData: map[string][]byte{blobKey: part},
			}
			if base.UID != "" {
				cm.OwnerReferences = []metav1.OwnerReference{{
					APIVersion: v1alpha1.GroupVersion.String(), Kind: "WorkflowRun", Name: key.Name, UID: base.UID,
				}}
			}
			if err := s.opts.Client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("run %s: store a variable of %d bytes: %w", key, len(b.Data), err)
			}
		}
	}
	return nil
}

// blobSizes are the sizes of the blobs a run's bookkeeping refers to, by hash.
func blobSizes(bk bookkeeping) map[string]int {
	sizes := make(map[string]int, len(bk.Blobs)+len(bk.Slots))
	for _, ref := range bk.Blobs {
		sizes[ref.Hash] = ref.Bytes
	}
	for _, ref := range bk.Slots {
		sizes[ref.Hash] = ref.Bytes
	}
	return sizes
}

// readBlobs reads the blobs of a run by hash, of the sizes given, from the API server (the
// cache does not hold them: they are read only when a run is loaded anew).
func (s *Store) readBlobs(ctx context.Context, key engine.Key, hashes []string, sizes map[string]int) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, hash := range hashes {
		data := make([]byte, 0, sizes[hash])
		for i := range blobParts(sizes[hash]) {
			cm := &corev1.ConfigMap{}
			err := s.opts.Client.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: blobName(key.Name, hash, i)}, cm)
			if apierrors.IsNotFound(err) {
				data = nil
				break
			}
			if err != nil {
				return nil, err
			}
			data = append(data, cm.BinaryData[blobKey]...)
		}
		if data != nil {
			out[hash] = data
		}
	}
	return out, nil
}

// deleteBlobs deletes the ConfigMaps of blobs a run no longer refers to. A failure leaves
// them to be deleted with the run.
func (s *Store) deleteBlobs(ctx context.Context, key engine.Key, hashes []string) {
	for _, h := range hashes {
		for i := 0; ; i++ {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: blobName(key.Name, h, i)}}
			if err := s.opts.Client.Delete(ctx, cm); err != nil {
				break // the last part was the one before, or it is left to the run's deletion
			}
		}
	}
}

// blobSelector selects the blob ConfigMaps of a run.
func blobSelector(key engine.Key) []client.DeleteAllOfOption {
	return []client.DeleteAllOfOption{client.InNamespace(key.Namespace), client.MatchingLabels{LabelBlob: "true", LabelRunName: key.Name}}
}

// DeleteBlobs deletes the ConfigMaps holding a run's large variables: the controller deletes
// them with the run, as Kubernetes' garbage collector would.
func DeleteBlobs(ctx context.Context, c client.Client, key engine.Key) error {
	if err := c.DeleteAllOf(ctx, &corev1.ConfigMap{}, blobSelector(key)...); err != nil {
		return fmt.Errorf("delete the variables of run %s: %w", key, err)
	}
	return nil
}

// RecordBytes is the size of the run's WorkflowRun as JSON, status and all, as the API server
// holds it: what every save of the run rewrites, its blobs aside. It is 0 for a run not stored.
func (s *Store) RecordBytes(ctx context.Context, key engine.Key) (int, error) {
	obj := &v1alpha1.WorkflowRun{}
	if err := s.opts.Client.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("size of run %s: %w", key, err)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// BlobBytes is the size of the values of the blob ConfigMaps of the run.
func (s *Store) BlobBytes(ctx context.Context, key engine.Key) (int, error) {
	var list corev1.ConfigMapList
	if err := s.opts.Client.List(ctx, &list, client.InNamespace(key.Namespace), client.MatchingLabels{LabelBlob: "true", LabelRunName: key.Name}); err != nil {
		return 0, fmt.Errorf("size of the blobs of run %s: %w", key, err)
	}
	n := 0
	for _, cm := range list.Items {
		n += len(cm.BinaryData[blobKey])
	}
	return n, nil
}
