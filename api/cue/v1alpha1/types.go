// Package v1alpha1 holds KubeVela's Package kind (cue.oam.dev/v1alpha1): a CUE package that step
// definitions import by its path, whose actions an external provider serves over HTTP. The shape
// is KubeVela's, so that the same Package YAML loads in stepflow and in KubeVela.
//
// +kubebuilder:object:generate=true
// +groupName=cue.oam.dev
package v1alpha1

import (
	"fmt"
	"net/url"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// GroupVersion is the group and version of the kinds in this package.
var GroupVersion = schema.GroupVersion{Group: "cue.oam.dev", Version: "v1alpha1"}

// KindPackage is the kind name of a CUE package.
const KindPackage = "Package"

// The protocols an external provider may speak.
const (
	ProtocolHTTP  = "http"
	ProtocolHTTPS = "https"
)

// AnnotationReads lists, comma separated, the actions (their `#do`) of a Package that change
// nothing: they run at every evaluation of a step instead of once per try. A stepflow
// annotation; KubeVela ignores it.
const AnnotationReads = "provider.stepflow.dev/reads"

// Package is a CUE package supplied to definitions under Spec.Path; with Spec.Provider, the
// actions whose `#provider` is the Package's name are served by that endpoint.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=cuepkg,categories=oam
// +kubebuilder:printcolumn:name=PATH,type=string,JSONPath=`.spec.path`
// +kubebuilder:printcolumn:name=PROTO,type=string,JSONPath=`.spec.provider.protocol`
// +kubebuilder:printcolumn:name=ENDPOINT,type=string,JSONPath=`.spec.provider.endpoint`
type Package struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec PackageSpec `json:"spec"`
}

// PackageSpec is the package's import path, its CUE files and its provider.
type PackageSpec struct {
	// Path is the import path definitions use, e.g. "ext/my".
	Path string `json:"path"`
	// Provider serves the package's actions; none for a package of plain CUE.
	Provider *Provider `json:"provider,omitempty"`
	// Templates are the package's CUE files, by file name.
	Templates map[string]string `json:"templates"`
}

// Provider is where an external provider is reached.
type Provider struct {
	// Protocol is http or https.
	Protocol string `json:"protocol"`
	// Endpoint is the provider's base URL: action <do> is POSTed to <endpoint>/<do>.
	Endpoint string `json:"endpoint"`
}

// PackageList is a list of Packages.
//
// +kubebuilder:object:root=true
type PackageList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Package `json:"items"`
}

// Files returns the package's file names, sorted.
func (p *Package) Files() []string {
	names := make([]string, 0, len(p.Spec.Templates))
	for n := range p.Spec.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks what a Package needs besides its CUE: a path, at least one file, and a
// provider with a known protocol and an http(s) URL for endpoint.
func (p *Package) Validate() field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if p.Spec.Path == "" {
		errs = append(errs, field.Required(spec.Child("path"), "the import path definitions use, e.g. ext/my"))
	}
	if len(p.Spec.Templates) == 0 {
		errs = append(errs, field.Required(spec.Child("templates"), "the package's CUE files, by file name"))
	}
	if pr := p.Spec.Provider; pr != nil {
		path := spec.Child("provider")
		if pr.Protocol != ProtocolHTTP && pr.Protocol != ProtocolHTTPS {
			errs = append(errs, field.NotSupported(path.Child("protocol"), pr.Protocol, []string{ProtocolHTTP, ProtocolHTTPS}))
		}
		if err := checkEndpoint(pr.Endpoint); err != nil {
			errs = append(errs, field.Invalid(path.Child("endpoint"), pr.Endpoint, err.Error()))
		}
	}
	return errs
}

func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return fmt.Errorf("an http(s) URL is needed")
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	case u.Host == "":
		return fmt.Errorf("no host")
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("a base URL takes no query nor fragment: the action's name is appended to its path")
	}
	return nil
}

// AddToScheme registers the kinds of this package with a scheme, for Kubernetes clients.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Package{}, &PackageList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
