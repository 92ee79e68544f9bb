// records.go: store.Records in ConfigMaps, for the records the controller keeps (the slots of
// concurrency keys).

package crd

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/store"
)

const (
	// LabelRecord marks the ConfigMaps holding a record (Records), one each; its value is the
	// record's kind.
	LabelRecord  = "workflowrun.oam.dev/record"
	recordPrefix = "stepflow-record-"
	// The ConfigMap's data keys: the record's key as it is, and its data (under binaryData
	// when it is not UTF-8).
	recordKeyKey  = "key"
	recordDataKey = "data"
)

// Records is store.Records in ConfigMaps, read from and written to the API server (Client),
// never a cache, so that its versions are the stored ones. A record's key is
// "<namespace>/<rest>" (as store.Slots makes them): the record is the ConfigMap
// stepflow-record-<kind>-<hash of the key> of that namespace, labelled LabelRecord=<kind>,
// with the key as it is under data "key"; its version is the ConfigMap's resourceVersion, by
// which an update is a compare-and-swap. The kind must be a valid label value and name part
// (lower-case letters, digits, '-'). The zero value with a Client is ready to use.
type Records struct {
	Client client.Client
}

// recordName is the ConfigMap of kind/key in its namespace, valid whatever the key.
func recordName(kind, key string) (namespace, name string, err error) {
	if errs := validation.IsDNS1123Label(kind); len(errs) > 0 {
		return "", "", fmt.Errorf("record kind %q: %s", kind, strings.Join(errs, "; "))
	}
	namespace, _, ok := strings.Cut(key, "/")
	if !ok || namespace == "" {
		return "", "", fmt.Errorf("record %s %q: the key must start with a namespace and a slash", kind, key)
	}
	sum := sha256.Sum256([]byte(key))
	return namespace, recordPrefix + kind + "-" + hex.EncodeToString(sum[:16]), nil
}

// recordVersion is the version of a stored ConfigMap: its resourceVersion, which the API
// server (etcd's revision) never hands out twice.
func recordVersion(cm *corev1.ConfigMap) (int64, error) {
	v, err := strconv.ParseInt(cm.ResourceVersion, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("ConfigMap %s/%s: resourceVersion %q is not a positive integer", cm.Namespace, cm.Name, cm.ResourceVersion)
	}
	return v, nil
}

// decodeRecord reads the record a ConfigMap holds.
func decodeRecord(cm *corev1.ConfigMap) (store.Record, error) {
	v, err := recordVersion(cm)
	if err != nil {
		return store.Record{}, err
	}
	r := store.Record{Key: cm.Data[recordKeyKey], Version: v}
	if d, ok := cm.BinaryData[recordDataKey]; ok {
		r.Data = d
	} else if d, ok := cm.Data[recordDataKey]; ok {
		r.Data = []byte(d)
	}
	return r, nil
}

// PutRecord implements store.Records.
func (r *Records) PutRecord(ctx context.Context, kind, key string, data []byte, version int64) (int64, error) {
	if version < 0 {
		return 0, fmt.Errorf("record %s %q: version %d", kind, key, version)
	}
	ns, name, err := recordName(kind, key)
	if err != nil {
		return 0, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{LabelRecord: kind}},
		Data:       map[string]string{recordKeyKey: key},
	}
	if utf8.Valid(data) {
		cm.Data[recordDataKey] = string(data)
	} else {
		cm.BinaryData = map[string][]byte{recordDataKey: data}
	}
	if version == 0 {
		err = r.Client.Create(ctx, cm)
		if apierrors.IsAlreadyExists(err) {
			return 0, fmt.Errorf("record %s %q: %w", kind, key, store.ErrExists)
		}
	} else {
		cm.ResourceVersion = strconv.FormatInt(version, 10)
		err = r.Client.Update(ctx, cm) // only at that resourceVersion
		switch {
		case apierrors.IsConflict(err):
			return 0, fmt.Errorf("record %s %q at version %d: %w", kind, key, version, engine.ErrConflict)
		case apierrors.IsNotFound(err):
			return 0, fmt.Errorf("record %s %q: %w", kind, key, engine.ErrNotFound)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("record %s %q: %w", kind, key, err)
	}
	return recordVersion(cm)
}

// Record implements store.Records.
func (r *Records) Record(ctx context.Context, kind, key string) (store.Record, error) {
	ns, name, err := recordName(kind, key)
	if err != nil {
		return store.Record{}, err
	}
	cm := &corev1.ConfigMap{}
	err = r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm)
	if apierrors.IsNotFound(err) || err == nil && (cm.Labels[LabelRecord] != kind || cm.Data[recordKeyKey] != key) {
		return store.Record{}, fmt.Errorf("record %s %q: %w", kind, key, engine.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("record %s %q: %w", kind, key, err)
	}
	return decodeRecord(cm)
}

// Records implements store.Records: one list of the kind's ConfigMaps, of the prefix's
// namespace when it names one, else of every namespace.
func (r *Records) Records(ctx context.Context, kind, prefix string) ([]store.Record, error) {
	if errs := validation.IsDNS1123Label(kind); len(errs) > 0 {
		return nil, fmt.Errorf("record kind %q: %s", kind, strings.Join(errs, "; "))
	}
	opts := []client.ListOption{client.MatchingLabels{LabelRecord: kind}}
	if ns, _, ok := strings.Cut(prefix, "/"); ok {
		opts = append(opts, client.InNamespace(ns))
	}
	var list corev1.ConfigMapList
	if err := r.Client.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("list the records %s: %w", kind, err)
	}
	out := make([]store.Record, 0, len(list.Items))
	for i := range list.Items {
		if !strings.HasPrefix(list.Items[i].Data[recordKeyKey], prefix) {
			continue
		}
		rec, err := decodeRecord(&list.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	slices.SortFunc(out, func(a, b store.Record) int { return cmp.Compare(a.Key, b.Key) })
	return out, nil
}

// DeleteRecord implements store.Records.
func (r *Records) DeleteRecord(ctx context.Context, kind, key string) error {
	if _, err := r.Record(ctx, kind, key); err != nil {
		return err
	}
	ns, name, _ := recordName(kind, key)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	err := r.Client.Delete(ctx, cm)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("record %s %q: %w", kind, key, engine.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete record %s %q: %w", kind, key, err)
	}
	return nil
}
