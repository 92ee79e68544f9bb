// Package crd keeps runs in Kubernetes custom resources, where KubeVela Workflow keeps them: the WorkflowRun's
// status holds where the run is (with stepflow's own bookkeeping under status.stepflow), and the
// ConfigMap workflow-<run>-context, named by status.contextBackend, holds the run variables and
// the steps' log.
//
// Every status write is one JSON merge patch of the difference from the version loaded, with
// that resourceVersion as a precondition: a concurrent change (kubectl patch, another replica)
// makes the save fail with engine.ErrConflict rather than be overwritten. The ConfigMap is
// written only when the variables changed, or when log lines are pending and the run is at rest,
// so that a three-step run costs a handful of requests.
//
// A run with sensitive values (engine.Run.Sensitive) keeps them out of its status: the
// bookkeeping, which holds them and may hold them in its variables, memos, loop items and
// context, is sealed. The status then holds only its SHA-256 under status.stepflow.sealed,
// and the ConfigMap holds the record itself (data key stepflow, by hash), written before the
// status at every save with the variables and the whole log. The ConfigMap keeps the record
// the status refers to and the new one, so that a status write that fails leaves the status
// referring to a record that is still there. Sealing costs a ConfigMap write per save, only
// for such runs; the ConfigMap holds the variables in clear already, as KubeVela's does.
package crd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
)

// Labels on the context ConfigMap, so that a cache can watch just these.
const (
	// LabelContext marks a run's context ConfigMap.
	LabelContext = "workflowrun.oam.dev/context"
	// LabelRunName and LabelRunNamespace name the run an object belongs to.
	LabelRunName      = "workflowrun.oam.dev/name"
	LabelRunNamespace = "workflowrun.oam.dev/namespace"
)

// ConfigMap data keys.
const (
	keyVars = "vars"
	keyLogs = "logs"
	// keySealed holds the sealed bookkeeping of a run with sensitive values: a JSON object
	// of records by their SHA-256.
	keySealed = "stepflow"
)

// DefaultMaxLogBytes bounds the log kept per run in its ConfigMap; the oldest lines go first.
const DefaultMaxLogBytes = 256 << 10

// Options configure a Store. Client is required.
type Options struct {
	// Client writes, and reads where there is no Cache or the Cache is behind this store's writes.
	Client client.Client
	// Cache, when set, serves loads (the controller passes its informer cache), so that a load
	// costs no request. It must see WorkflowRuns and the ConfigMaps labelled LabelContext.
	Cache client.Reader
	// Clock dates terminations noticed in the status; the real clock when nil.
	Clock engine.Clock
	// MaxLogBytes bounds the log kept per run; DefaultMaxLogBytes when 0.
	MaxLogBytes int
}

// Store is an engine.Store over WorkflowRun objects.
type Store struct {
	opts Options
	mu   sync.Mutex
	runs map[engine.Key]*entry
}

// entry is what the store remembers of a run between calls.
type entry struct {
	// base is the object as last loaded or written: the patch is computed against it.
	base *v1alpha1.WorkflowRun
	// written is the highest resourceVersion of the run this store wrote.
	written uint64
	// cm is the context ConfigMap as last loaded or written; nil when it does not exist.
	cm *corev1.ConfigMap
	// cmWritten is the highest resourceVersion of the ConfigMap this store wrote.
	cmWritten uint64
	// vars is the variables' JSON as stored in the ConfigMap.
	vars string
	// logs is the whole log; pending counts the trailing lines not in the ConfigMap yet.
	logs    []engine.LogEntry
	pending int
}

// bookkeeping is what the engine keeps beside the KubeVela-shaped status, in status.stepflow.
type bookkeeping struct {
	// Spec is the resolved steps, kept only when they came from a Workflow template: inline
	// steps are read from the spec again.
	Spec          *v1alpha1.WorkflowSpec        `json:"spec,omitempty"`
	Epoch         int64                         `json:"epoch,omitempty"`
	Steps         map[string]*engine.StepRecord `json:"steps,omitempty"`
	ManualSuspend bool                          `json:"manualSuspend,omitempty"`
	Context       json.RawMessage               `json:"context,omitempty"`
	// ChildRuns counts the child runs started under a root run (engine.Run.ChildRuns).
	ChildRuns int `json:"childRuns,omitempty"`
	// TTLSecondsAfterFinished is the run's retention, its own or its template's
	// (engine.Run.TTLSecondsAfterFinished).
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
	// SLA is the run's SLA, its own or its template's, and SLABreachedAt when it was breached
	// (engine.Run.SLA, SLABreachedAt).
	SLA           *v1alpha1.SLA `json:"sla,omitempty"`
	SLABreachedAt time.Time     `json:"slaBreachedAt,omitzero"`
	// Concurrency, Priority, SlotKey and Admitted are the run's concurrency key, its place in
	// line's priority, the key's value and whether it holds a slot; StepSlots the keys of the
	// slots its steps hold or wait for (engine.Run's).
	Concurrency *v1alpha1.Concurrency `json:"concurrency,omitempty"`
	Priority    int32                 `json:"priority,omitempty"`
	SlotKey     string                `json:"slotKey,omitempty"`
	Admitted    bool                  `json:"admitted,omitempty"`
	StepSlots   map[string]string     `json:"stepSlots,omitempty"`
	// Loops are the iterations of looping steps in full (the status keeps a bounded summary).
	Loops map[string]*engine.Loop `json:"loops,omitempty"`
	// Suspend and Terminated are status.suspend and status.terminated as stepflow last wrote
	// them: a difference is a user's operation (kubectl patch), applied at the next load.
	Suspend    bool `json:"suspend,omitempty"`
	Terminated bool `json:"terminated,omitempty"`
	// Vars, when VarsHeld, are the run variables, held here while the run executes and not
	// written to the ConfigMap yet.
	Vars     map[string]json.RawMessage `json:"vars,omitempty"`
	VarsHeld bool                       `json:"varsHeld,omitempty"`
	// Blobs refer to the variables kept as blobs (engine.Run.SpillVars), wherever the others
	// are: their values are in ConfigMaps of their own (blobName).
	Blobs map[string]engine.BlobRef `json:"blobs,omitempty"`
	// Slots refer likewise to the values of Loops and Steps kept as blobs.
	Slots []engine.SlotRef `json:"slots,omitempty"`
	// Sensitive are the run's sensitive values: only ever in a sealed record.
	Sensitive []string `json:"sensitive,omitempty"`
	// Sealed, in the status of a run with sensitive values, is the SHA-256 of the run's
	// bookkeeping, kept in the context ConfigMap instead; the status's bookkeeping then holds
	// only Sealed, Suspend, Terminated and From.
	Sealed string `json:"sealed,omitempty"`
	// From is the version this save was made from, so that every save changes the object and
	// moves its resourceVersion on, as the engine's compare-and-swap expects.
	From int64 `json:"from"`
}

// seal is the bookkeeping of a run with sensitive values, to be written to its ConfigMap.
type seal struct {
	sum string // hex SHA-256 of raw
	raw json.RawMessage
}

// New returns a store.
func New(opts Options) *Store {
	if opts.Clock == nil {
		opts.Clock = engine.RealClock{}
	}
	if opts.MaxLogBytes <= 0 {
		opts.MaxLogBytes = DefaultMaxLogBytes
	}
	return &Store{opts: opts, runs: map[engine.Key]*entry{}}
}

// ContextName is the name of a run's context ConfigMap.
func ContextName(run string) string { return "workflow-" + run + "-context" }

func (s *Store) entry(key engine.Key) *entry {
	e := s.runs[key]
	if e == nil {
		e = &entry{}
		s.runs[key] = e
	}
	return e
}

// Forget drops what the store remembers of a run (it was deleted).
func (s *Store) Forget(key engine.Key) {
	s.mu.Lock()
	delete(s.runs, key)
	s.mu.Unlock()
}

// Own reports whether resourceVersion rv of a run is one this store wrote, or older: a watch
// event for it brings nothing the engine does not know already.
func (s *Store) Own(key engine.Key, rv string) bool {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.runs[key]
	return e != nil && n <= e.written
}

func version(rv string) uint64 {
	n, _ := strconv.ParseUint(rv, 10, 64)
	return n
}

// get reads an object from the cache, or from the API server when there is no cache or the
// cache has not seen this store's last write yet.
func (s *Store) get(ctx context.Context, key client.ObjectKey, obj client.Object, written uint64) error {
	if s.opts.Cache != nil {
		err := s.opts.Cache.Get(ctx, key, obj)
		if err == nil && version(obj.GetResourceVersion()) >= written {
			return nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err != nil && written == 0 {
			return err
		}
	}
	return s.opts.Client.Get(ctx, key, obj)
}

// Load implements engine.Store.
func (s *Store) Load(ctx context.Context, key engine.Key) (*engine.Run, error) {
	s.mu.Lock()
	e := s.entry(key)
	written, cmWritten := e.written, e.cmWritten
	s.mu.Unlock()

	obj := &v1alpha1.WorkflowRun{}
	if err := s.get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: key.Name}, obj, written); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("run %s: %w", key, engine.ErrNotFound)
		}
		return nil, fmt.Errorf("load run %s: %w", key, err)
	}
	cm := &corev1.ConfigMap{}
	if err := s.get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: ContextName(key.Name)}, cm, cmWritten); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("load the context of run %s: %w", key, err)
		}
		cm = nil
	}
	run, err := s.decode(ctx, obj, cm)
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	e = s.entry(key)
	e.base = obj.DeepCopy()
	e.cm = cm
	e.vars = ""
	if cm != nil {
		e.vars = cm.Data[keyVars]
		if n := version(cm.ResourceVersion); n > e.cmWritten {
			e.logs = decodeLogs(cm.Data[keyLogs])
			e.pending = 0
		}
	}
	return run, nil
}

// decode assembles the engine's run from the object and its context ConfigMap.
func (s *Store) decode(ctx context.Context, obj *v1alpha1.WorkflowRun, cm *corev1.ConfigMap) (*engine.Run, error) {
	run := &engine.Run{Object: obj.DeepCopy(), Version: int64(version(obj.ResourceVersion))}
	run.Object.APIVersion, run.Object.Kind = v1alpha1.GroupVersion.String(), "WorkflowRun"
	st := &run.Object.Status
	var bk bookkeeping
	if st.Engine != nil && len(st.Engine.Raw) > 0 {
		if err := json.Unmarshal(st.Engine.Raw, &bk); err != nil {
			return nil, fmt.Errorf("run %s: status.stepflow: %w", run.Key(), err)
		}
	}
	st.Engine = nil
	if bk.Sealed != "" {
		var err error
		if bk, err = unseal(cm, bk.Sealed); err != nil {
			return nil, fmt.Errorf("run %s: %w", run.Key(), err)
		}
		run.Sensitive = bk.Sensitive
	}
	if cm != nil && cm.Data[keyVars] != "" {
		if err := json.Unmarshal([]byte(cm.Data[keyVars]), &run.Vars); err != nil {
			return nil, fmt.Errorf("run %s: ConfigMap %s: data.vars: %w", run.Key(), cm.Name, err)
		}
	}
	if bk.VarsHeld {
		run.Vars = bk.Vars
	}
	if err := run.FillVars(run.Vars, bk.Blobs, func(hashes []string) (map[string][]byte, error) {
		return s.readBlobs(ctx, run.Key(), hashes, blobSizes(bk))
	}); err != nil {
		return nil, err
	}
	if st.Phase == "" {
		// Never started, or its status was cleared (KubeVela's restart): the engine starts it.
		return run, nil
	}
	run.Epoch, run.Steps, run.ManualSuspend, run.Loops, run.Context = bk.Epoch, bk.Steps, bk.ManualSuspend, bk.Loops, bk.Context
	run.ChildRuns, run.TTLSecondsAfterFinished = bk.ChildRuns, bk.TTLSecondsAfterFinished
	run.SLA, run.SLABreachedAt = bk.SLA, bk.SLABreachedAt
	run.Concurrency, run.Priority, run.SlotKey, run.Admitted, run.StepSlots = bk.Concurrency, bk.Priority, bk.SlotKey, bk.Admitted, bk.StepSlots
	switch {
	case bk.Spec != nil:
		run.Spec = bk.Spec
	case obj.Spec.WorkflowSpec != nil:
		run.Spec = obj.Spec.WorkflowSpec.DeepCopy()
		v1alpha1.DefaultStepNames(run.Spec.Steps)
	default:
		run.Spec = &v1alpha1.WorkflowSpec{}
	}
	if err := run.FillSlots(bk.Slots, func(hashes []string) (map[string][]byte, error) {
		return s.readBlobs(ctx, run.Key(), hashes, blobSizes(bk))
	}); err != nil {
		return nil, err
	}
	if run.Steps == nil {
		run.Steps = map[string]*engine.StepRecord{}
	}
	// Operations a user wrote into the status directly, as KubeVela's CLI does.
	if !st.Finished {
		if op, ok := statusOperation(st, bk); ok {
			if op.Kind == engine.OpTerminate {
				st.Terminated = false // as it was: the operation sets it
			}
			if err := op.Apply(run, s.opts.Clock.Now()); err != nil {
				return nil, fmt.Errorf("run %s: the %s written into its status: %w", run.Key(), op.Kind, err)
			}
		}
	}
	return run, nil
}

// statusOperation is the operation a user wrote into a run's status directly, as KubeVela's CLI
// does (status.terminated, status.suspend set or cleared), told from the controller's own state
// by what it wrote last (bk).
func statusOperation(st *v1alpha1.WorkflowRunStatus, bk bookkeeping) (engine.Operation, bool) {
	switch {
	case st.Terminated && !bk.Terminated:
		return engine.Operation{Kind: engine.OpTerminate}, true
	case st.Suspend && !bk.Suspend:
		return engine.Operation{Kind: engine.OpSuspend}, true
	case !st.Suspend && bk.Suspend:
		return engine.Operation{Kind: engine.OpResume}, true
	}
	return engine.Operation{}, false
}

// unseal reads the sealed bookkeeping whose SHA-256 is sum from the context ConfigMap.
func unseal(cm *corev1.ConfigMap, sum string) (bookkeeping, error) {
	var bk bookkeeping
	if cm == nil {
		return bk, errors.New("status.stepflow is sealed in the run's context ConfigMap, which does not exist")
	}
	records, err := sealedRecords(cm)
	if err != nil {
		return bk, err
	}
	raw, ok := records[sum]
	if !ok {
		return bk, fmt.Errorf("ConfigMap %s: data.%s has no record %s, which status.stepflow refers to", cm.Name, keySealed, sum)
	}
	if err := json.Unmarshal(raw, &bk); err != nil {
		return bk, fmt.Errorf("ConfigMap %s: data.%s: %w", cm.Name, keySealed, err)
	}
	return bk, nil
}

// sealedRecords are the sealed bookkeeping records of a context ConfigMap, by hash.
func sealedRecords(cm *corev1.ConfigMap) (map[string]json.RawMessage, error) {
	records := map[string]json.RawMessage{}
	if text := cm.Data[keySealed]; text != "" {
		if err := json.Unmarshal([]byte(text), &records); err != nil {
			return nil, fmt.Errorf("ConfigMap %s: data.%s: %w", cm.Name, keySealed, err)
		}
	}
	return records, nil
}

// Save implements engine.Store.
func (s *Store) Save(ctx context.Context, run *engine.Run, logs []engine.LogEntry) error {
	key := run.Key()
	// The large values are written as blobs first, and the rest of the save sees only the
	// others, with the blobs' references.
	spill := run.SpillVars(maxHeldVars)
	vars, loops, steps := run.Vars, run.Loops, run.Steps
	run.Vars, run.Loops, run.Steps = spill.Vars, spill.Loops, spill.Steps
	defer func() { run.Vars, run.Loops, run.Steps = vars, loops, steps }()
	obj, sealed, err := encode(run, spill)
	if err != nil {
		return err
	}
	if run.Version == 0 {
		created, err := s.create(ctx, obj)
		if err != nil {
			return err
		}
		run.Version = int64(version(created.ResourceVersion))
		run.Object.UID = created.UID
	}

	s.mu.Lock()
	e := s.entry(key)
	base := e.base
	if base != nil && version(base.ResourceVersion) != uint64(run.Version) {
		base = nil
	}
	s.mu.Unlock()
	if base == nil {
		base = &v1alpha1.WorkflowRun{}
		if err := s.opts.Client.Get(ctx, client.ObjectKeyFromObject(obj), base); err != nil {
			if apierrors.IsNotFound(err) {
				// Saving at a version of a run that is not there: it was deleted meanwhile.
				return fmt.Errorf("run %s is not stored: %w", key, engine.ErrConflict)
			}
			return fmt.Errorf("save run %s: %w", key, err)
		}
		if version(base.ResourceVersion) != uint64(run.Version) {
			return fmt.Errorf("run %s: %w", key, engine.ErrConflict)
		}
	}

	if err := s.writeBlobs(ctx, key, base, spill.New); err != nil {
		return err
	}
	var held map[string]json.RawMessage
	if sealed != nil {
		err = s.saveSealed(ctx, run, base, logs, sealed)
	} else {
		held, err = s.saveContext(ctx, run, base, logs)
	}
	if err != nil {
		return err
	}
	if held != nil {
		if obj, err = encodeHeld(run, spill, held); err != nil {
			return err
		}
	}

	obj.ObjectMeta = *base.ObjectMeta.DeepCopy()
	patch, err := statusPatch(base, obj)
	if err != nil {
		return fmt.Errorf("save run %s: %w", key, err)
	}
	if err := s.opts.Client.Status().Patch(ctx, obj, patch); err != nil {
		switch {
		case apierrors.IsConflict(err):
			return fmt.Errorf("run %s: %w", key, engine.ErrConflict)
		case apierrors.IsNotFound(err):
			return fmt.Errorf("run %s: %w", key, engine.ErrNotFound)
		}
		return fmt.Errorf("save the status of run %s: %w", key, err)
	}
	s.mu.Lock()
	e = s.entry(key)
	e.base = obj
	if n := version(obj.ResourceVersion); n > e.written {
		e.written = n
	}
	if held != nil {
		// The lines wait in memory for the next write of the ConfigMap.
		e.logs = s.trim(append(e.logs, logs...))
		e.pending += len(logs)
	}
	s.mu.Unlock()
	run.Version = int64(version(obj.ResourceVersion))
	run.Object.ResourceVersion = obj.ResourceVersion
	run.Object.UID = obj.UID
	run.SpillSaved(spill)
	// The status no longer refers to them: a failure leaves them to be deleted with the run.
	s.deleteBlobs(ctx, key, spill.Unused)
	return nil
}

// statusPatch is the merge patch from base to obj, conditional on base's resourceVersion. A
// status the API server does not hold yet (a new run, or one a user cleared to restart it) is
// sent whole: a difference from Go's zero values would leave out required false booleans.
//
// The difference is taken between the two statuses alone: a status patch changes nothing else,
// and marshalling and comparing the whole objects (spec, managed fields) was 8% of the
// controller's CPU.
func statusPatch(base, obj *v1alpha1.WorkflowRun) (client.Patch, error) {
	var status any = obj.Status
	if base.Status.Phase != "" {
		from, err := json.Marshal(&base.Status)
		if err != nil {
			return nil, err
		}
		to, err := json.Marshal(&obj.Status)
		if err != nil {
			return nil, err
		}
		diff, err := jsonpatch.CreateMergePatch(from, to)
		if err != nil {
			return nil, err
		}
		status = json.RawMessage(diff)
	}
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": base.ResourceVersion},
		"status":   status,
	})
	if err != nil {
		return nil, err
	}
	return client.RawPatch(types.MergePatchType, body), nil
}

// create creates a run that is not stored yet (a child run of a sub-workflow step).
func (s *Store) create(ctx context.Context, obj *v1alpha1.WorkflowRun) (*v1alpha1.WorkflowRun, error) {
	fresh := &v1alpha1.WorkflowRun{ObjectMeta: metav1.ObjectMeta{
		Name: obj.Name, Namespace: obj.Namespace, Labels: obj.Labels, Annotations: obj.Annotations,
		OwnerReferences: obj.OwnerReferences,
	}, Spec: obj.Spec}
	s.adopt(fresh)
	if err := s.opts.Client.Create(ctx, fresh); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("run %s/%s: %w", obj.Namespace, obj.Name, engine.ErrConflict)
		}
		return nil, fmt.Errorf("create run %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	s.mu.Lock()
	e := s.entry(engine.Key{Namespace: obj.Namespace, Name: obj.Name})
	e.base = fresh.DeepCopy()
	e.written = version(fresh.ResourceVersion)
	s.mu.Unlock()
	return fresh, nil
}

// ShardLabel assigns a WorkflowRun to one of several controllers (KubeVela's label).
const ShardLabel = "controller.core.oam.dev/scheduled-shard-id"

// adopt makes a child run (labelled with its parent) owned by its parent, so that deleting the
// parent deletes it, and puts it in its parent's shard, so that the same controller drives it.
func (s *Store) adopt(child *v1alpha1.WorkflowRun) {
	parent := child.Labels[v1alpha1.LabelParentRun]
	if parent == "" {
		return
	}
	s.mu.Lock()
	e := s.runs[engine.Key{Namespace: child.Namespace, Name: parent}]
	var p *v1alpha1.WorkflowRun
	if e != nil && e.base != nil {
		p = e.base
	}
	s.mu.Unlock()
	if p == nil {
		return
	}
	if shard, ok := p.Labels[ShardLabel]; ok {
		child.Labels = maps.Clone(child.Labels)
		child.Labels[ShardLabel] = shard
	}
	if p.UID != "" && len(child.OwnerReferences) == 0 {
		child.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "WorkflowRun", Name: p.Name, UID: p.UID,
		}}
	}
}

// encode renders the run as the object to store: its status with the bookkeeping. For a run
// with sensitive values the bookkeeping is sealed: the status refers to it by hash, and the
// seal returned is what the ConfigMap is to hold.
func encode(run *engine.Run, spill engine.Spill) (*v1alpha1.WorkflowRun, *seal, error) {
	if len(run.Sensitive) == 0 {
		obj, err := encodeWith(run, spill, nil)
		return obj, nil, err
	}
	var sealed *seal
	obj, err := encodeWith(run, spill, func(bk *bookkeeping) error {
		// Sealed whole, with this version's variables: the record is exactly this save's.
		bk.Sensitive, bk.Vars, bk.VarsHeld = run.Sensitive, run.Vars, true
		raw, err := json.Marshal(bk)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(raw)
		sealed = &seal{sum: hex.EncodeToString(sum[:]), raw: raw}
		*bk = bookkeeping{Sealed: sealed.sum, Suspend: bk.Suspend, Terminated: bk.Terminated, From: bk.From}
		return nil
	})
	return obj, sealed, err
}

func encodeWith(run *engine.Run, spill engine.Spill, more func(*bookkeeping) error) (*v1alpha1.WorkflowRun, error) {
	obj := run.Object.DeepCopy()
	st := &obj.Status
	bk := bookkeeping{
		Epoch: run.Epoch, Steps: run.Steps, ManualSuspend: run.ManualSuspend, Loops: run.Loops, Context: run.Context,
		ChildRuns: run.ChildRuns, TTLSecondsAfterFinished: run.TTLSecondsAfterFinished, SLA: run.SLA, SLABreachedAt: run.SLABreachedAt,
		Concurrency: run.Concurrency, Priority: run.Priority, SlotKey: run.SlotKey, Admitted: run.Admitted, StepSlots: run.StepSlots, Suspend: st.Suspend, Terminated: st.Terminated, From: run.Version,
		Blobs: spill.Blobs, Slots: spill.Slots,
	}
	if run.Object.Spec.WorkflowSpec == nil {
		bk.Spec = run.Spec
	}
	if more != nil {
		if err := more(&bk); err != nil {
			return nil, fmt.Errorf("run %s: encode bookkeeping: %w", run.Key(), err)
		}
	}
	raw, err := json.Marshal(bk)
	if err != nil {
		return nil, fmt.Errorf("run %s: encode bookkeeping: %w", run.Key(), err)
	}
	st.Engine = &runtime.RawExtension{Raw: raw}
	return obj, nil
}

// maxHeldVars bounds the variables held in the status while a run executes; beyond it they
// are written to the ConfigMap at once.
const maxHeldVars = 32 << 10

// encodeHeld is encode with the variables held in the status.
func encodeHeld(run *engine.Run, spill engine.Spill, vars map[string]json.RawMessage) (*v1alpha1.WorkflowRun, error) {
	return encodeWith(run, spill, func(bk *bookkeeping) error {
		bk.Vars, bk.VarsHeld = vars, true
		return nil
	})
}

// saveSealed writes the context ConfigMap of a run with sensitive values: its variables, its
// whole log, and its sealed bookkeeping beside the record the status (base) refers to now,
// which a failed status write leaves it referring to. Nothing is held for later.
func (s *Store) saveSealed(ctx context.Context, run *engine.Run, base *v1alpha1.WorkflowRun, logs []engine.LogEntry, sealed *seal) error {
	vars, err := encodeVars(run)
	if err != nil {
		return err
	}
	s.mu.Lock()
	e := s.entry(run.Key())
	all := append(append([]engine.LogEntry(nil), e.logs...), logs...)
	cm := e.cm
	s.mu.Unlock()

	records := map[string]json.RawMessage{sealed.sum: sealed.raw}
	if prev := sealedSum(base); prev != "" && cm != nil {
		if old, err := sealedRecords(cm); err == nil && old[prev] != nil {
			records[prev] = old[prev]
		}
	}
	text, err := json.Marshal(records)
	if err != nil {
		return fmt.Errorf("run %s: encode the sealed bookkeeping: %w", run.Key(), err)
	}
	all = s.trim(all)
	if err := s.writeContext(ctx, run, base, cm, vars, all, string(text)); err != nil {
		return err
	}
	s.mu.Lock()
	e.logs = all
	s.mu.Unlock()
	return nil
}

// sealedSum is the hash of the sealed bookkeeping obj's status refers to; "" when it is not
// sealed.
func sealedSum(obj *v1alpha1.WorkflowRun) string {
	var bk bookkeeping
	if e := obj.Status.Engine; e == nil || json.Unmarshal(e.Raw, &bk) != nil {
		return ""
	}
	return bk.Sealed
}

// saveContext writes the context ConfigMap when the run comes to rest (waiting, suspended or
// finished) with variables or log lines the ConfigMap does not have, or when the variables grew
// beyond maxHeldVars. While the run executes, changed variables are held in status.stepflow
// instead (returned, for the status write), so that a run that goes from step to step writes its
// ConfigMap once rather than at every output. It is written before the status, so a status
// never refers to variables stored nowhere. The log lines of a save that then fails on a
// conflict may be in the ConfigMap twice; the engine's retry carries them again.
func (s *Store) saveContext(ctx context.Context, run *engine.Run, base *v1alpha1.WorkflowRun, logs []engine.LogEntry) (held map[string]json.RawMessage, err error) {
	vars, err := encodeVars(run)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	e := s.entry(run.Key())
	changed := vars != e.vars && !(e.vars == "" && vars == "{}")
	pending := e.pending + len(logs)
	all := append(append([]engine.LogEntry(nil), e.logs...), logs...)
	cm := e.cm
	s.mu.Unlock()

	rest := atRest(run.Object)
	if !(rest && (changed || pending > 0)) && !(changed && len(vars) > maxHeldVars) {
		if changed {
			held = run.Vars
			if held == nil {
				held = map[string]json.RawMessage{}
			}
		}
		return held, nil
	}
	all = s.trim(all)
	if err := s.writeContext(ctx, run, base, cm, vars, all, ""); err != nil {
		return nil, err
	}
	s.mu.Lock()
	e.logs = all
	s.mu.Unlock()
	return nil, nil
}

func encodeVars(run *engine.Run) (string, error) {
	if len(run.Vars) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(run.Vars)
	if err != nil {
		return "", fmt.Errorf("run %s: encode variables: %w", run.Key(), err)
	}
	return string(b), nil
}

// writeContext creates or patches the context ConfigMap with the variables and the log, and
// the sealed bookkeeping records when sealed is not "".
func (s *Store) writeContext(ctx context.Context, run *engine.Run, base *v1alpha1.WorkflowRun, cm *corev1.ConfigMap, vars string, logs []engine.LogEntry, sealed string) error {
	data := map[string]string{keyVars: vars, keyLogs: encodeLogs(logs)}
	if sealed != "" {
		data[keySealed] = sealed
	}
	written, err := s.putContext(ctx, run, base, cm, data)
	if err != nil {
		return err
	}
	s.mu.Lock()
	e := s.entry(run.Key())
	e.cm, e.vars, e.pending = written, vars, 0
	if n := version(written.ResourceVersion); n > e.cmWritten {
		e.cmWritten = n
	}
	s.mu.Unlock()
	return nil
}

func (s *Store) putContext(ctx context.Context, run *engine.Run, base *v1alpha1.WorkflowRun, cm *corev1.ConfigMap, data map[string]string) (*corev1.ConfigMap, error) {
	key := run.Key()
	if cm == nil {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: ContextName(key.Name), Namespace: key.Namespace,
			Labels: map[string]string{LabelContext: "true", LabelRunName: key.Name, LabelRunNamespace: key.Namespace},
		}, Data: data}
		if base.UID != "" {
			cm.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: "WorkflowRun", Name: key.Name, UID: base.UID,
			}}
		}
		err := s.opts.Client.Create(ctx, cm)
		if err == nil {
			return cm, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create the context of run %s: %w", key, err)
		}
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ContextName(key.Name), Namespace: key.Namespace}}
	}
	body, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		return nil, err
	}
	out := cm.DeepCopy()
	if err := s.opts.Client.Patch(ctx, out, client.RawPatch(types.MergePatchType, body)); err != nil {
		return nil, fmt.Errorf("write the context of run %s: %w", key, err)
	}
	return out, nil
}

// atRest reports whether no step of the run is being executed right now: it finished, waits,
// or is suspended. Log lines are written to the ConfigMap then.
func atRest(obj *v1alpha1.WorkflowRun) bool {
	st := &obj.Status
	if st.Finished || st.Suspend {
		return true
	}
	busy := func(s *v1alpha1.StepStatus) bool {
		return s.Phase == v1alpha1.StepRunning && s.Reason == ""
	}
	for i := range st.Steps {
		if busy(&st.Steps[i].StepStatus) {
			return false
		}
		for j := range st.Steps[i].SubStepsStatus {
			if busy(&st.Steps[i].SubStepsStatus[j]) {
				return false
			}
		}
	}
	return true
}

// trim drops the oldest log lines beyond the store's bound.
func (s *Store) trim(logs []engine.LogEntry) []engine.LogEntry {
	size := 0
	for i, log := range slices.Backward(logs) {
		b, _ := json.Marshal(log)
		size += len(b) + 1
		if size > s.opts.MaxLogBytes {
			return logs[i+1:]
		}
	}
	return logs
}

func encodeLogs(logs []engine.LogEntry) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, l := range logs {
		_ = enc.Encode(l)
	}
	return buf.String()
}

func decodeLogs(s string) []engine.LogEntry {
	var out []engine.LogEntry
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	for {
		var l engine.LogEntry
		if err := dec.Decode(&l); err != nil {
			return out
		}
		out = append(out, l)
	}
}

// Logs returns a run's log, every step's when step is empty: what the ConfigMap holds and the
// lines this store has not written there yet.
func (s *Store) Logs(ctx context.Context, key engine.Key, step string) ([]engine.LogEntry, error) {
	s.mu.Lock()
	e := s.runs[key]
	var logs []engine.LogEntry
	if e != nil && (e.cm != nil || e.pending > 0) {
		logs = append(logs, e.logs...)
	}
	s.mu.Unlock()
	if logs == nil {
		cm := &corev1.ConfigMap{}
		err := s.opts.Client.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: ContextName(key.Name)}, cm)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read the log of run %s: %w", key, err)
		}
		logs = decodeLogs(cm.Data[keyLogs])
	}
	if step == "" {
		return logs, nil
	}
	var out []engine.LogEntry
	for _, l := range logs {
		if l.Step == step {
			out = append(out, l)
		}
	}
	return out, nil
}
