package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stepflow/stepflow/api/v1beta1"
)

// Applications keeps Applications and their revisions: what `stepflow app` and the server's
// /api/v1/applications routes deliver. A look-up of what is not stored fails with an error
// wrapping engine.ErrNotFound.
type Applications interface {
	// PutApplication writes app (metadata, spec and status) and returns its new version.
	// Version 0 creates it, failing with an error wrapping ErrExists when it is stored
	// already; a positive version replaces it only if that is the stored version, failing
	// with an error wrapping engine.ErrConflict when it is not, or engine.ErrNotFound when
	// there is no such Application.
	PutApplication(ctx context.Context, app *v1beta1.Application, version int64) (int64, error)
	// Application returns the stored Application and its version.
	Application(ctx context.Context, namespace, name string) (*v1beta1.Application, int64, error)
	// Applications lists the Applications of a namespace ("" for all), by namespace and name.
	Applications(ctx context.Context, namespace string) ([]*v1beta1.Application, error)
	// DeleteApplication deletes an Application and its revisions.
	DeleteApplication(ctx context.Context, namespace, name string) error
	// PutAppRevision creates a revision, or replaces the one of its Application and number.
	PutAppRevision(ctx context.Context, rev *AppRevision) error
	// AppRevisions returns the revisions of an Application, oldest first.
	AppRevisions(ctx context.Context, namespace, app string) ([]*AppRevision, error)
}

// AppRevision is one revision of an Application: the spec it delivered (with the definitions
// it was rendered with), the run that delivered it and the objects that run applied.
type AppRevision struct {
	// Object is the ApplicationRevision, named <app>-v<Number> in the Application's namespace.
	Object *v1beta1.ApplicationRevision
	// App names the Application; Number counts its revisions from 1.
	App    string
	Number int64
	// Hash is the hash of the spec and definitions the revision delivers.
	Hash string
	// Run names the WorkflowRun that delivers it, in the Application's namespace.
	Run string
	// Resources are the objects the run applied, in every cluster: the revision's resource
	// tracker, filled once its run has finished.
	Resources []v1beta1.ManagedResource
}

// Namespace is the revision's namespace, its Application's.
func (r *AppRevision) Namespace() string { return r.Object.Namespace }

// CheckAppRevision refuses a revision the stores cannot key.
func CheckAppRevision(rev *AppRevision) error {
	switch {
	case rev == nil || rev.Object == nil:
		return fmt.Errorf("store revision: no ApplicationRevision")
	case rev.App == "" || rev.Object.Name == "":
		return fmt.Errorf("store revision %q of application %q: the names are required", rev.Object.Name, rev.App)
	case rev.Number <= 0:
		return fmt.Errorf("store revision %s: number %d is not positive", rev.Object.Name, rev.Number)
	}
	return nil
}

// EncodeAppRevision is a revision's object and resources as the SQL stores write them.
func EncodeAppRevision(rev *AppRevision) (object, resources []byte, err error) {
	if object, err = json.Marshal(rev.Object); err != nil {
		return nil, nil, fmt.Errorf("encode revision %s: %w", rev.Object.Name, err)
	}
	if resources, err = json.Marshal(rev.Resources); err != nil {
		return nil, nil, fmt.Errorf("encode revision %s: resources: %w", rev.Object.Name, err)
	}
	return object, resources, nil
}

// ReadAppRevision reads a row of (app, number, hash, run, object, resources).
func ReadAppRevision(row Scanner) (*AppRevision, error) {
	var rev AppRevision
	var object, resources []byte
	if err := row.Scan(&rev.App, &rev.Number, &rev.Hash, &rev.Run, &object, &resources); err != nil {
		return nil, err
	}
	rev.Object = &v1beta1.ApplicationRevision{}
	if err := json.Unmarshal(object, rev.Object); err != nil {
		return nil, fmt.Errorf("decode revision %s v%d: %w", rev.App, rev.Number, err)
	}
	if len(resources) > 0 {
		if err := json.Unmarshal(resources, &rev.Resources); err != nil {
			return nil, fmt.Errorf("decode revision %s v%d: resources: %w", rev.App, rev.Number, err)
		}
	}
	return &rev, nil
}

// ReadApplication reads a row of (object, version), setting the version as the
// Application's resourceVersion too.
func ReadApplication(row Scanner) (*v1beta1.Application, int64, error) {
	var object []byte
	var version int64
	if err := row.Scan(&object, &version); err != nil {
		return nil, 0, err
	}
	app := &v1beta1.Application{}
	if err := json.Unmarshal(object, app); err != nil {
		return nil, 0, fmt.Errorf("decode application: %w", err)
	}
	app.ResourceVersion = fmt.Sprint(version)
	return app, version, nil
}

// EncodeApplication checks the arguments of a PutApplication (a named Application, a version
// not negative) and returns the Application as the SQL stores write it (without
// resourceVersion, which is the version column).
func EncodeApplication(app *v1beta1.Application, version int64) ([]byte, error) {
	if app == nil || app.Name == "" {
		return nil, errors.New("store application: no name")
	}
	if version < 0 {
		return nil, fmt.Errorf("store application %s/%s: negative version %d", app.Namespace, app.Name, version)
	}
	c := app.DeepCopy()
	c.ResourceVersion = ""
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode application %s/%s: %w", app.Namespace, app.Name, err)
	}
	return b, nil
}
