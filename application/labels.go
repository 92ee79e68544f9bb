package application

// The labels KubeVela puts on the objects an Application renders.
const (
	// LabelAppName is the Application's name.
	LabelAppName = "app.oam.dev/name"
	// LabelAppNamespace is the Application's namespace.
	LabelAppNamespace = "app.oam.dev/namespace"
	// LabelAppComponent is the component that rendered the object.
	LabelAppComponent = "app.oam.dev/component"
	// LabelAppRevision is the ApplicationRevision that rendered the object.
	LabelAppRevision = "app.oam.dev/appRevision"
	// LabelResourceType is WORKLOAD for a component's workload and TRAIT for the objects beside it.
	LabelResourceType = "app.oam.dev/resourceType"
	// LabelWorkloadType is the component's type, on its workload.
	LabelWorkloadType = "workload.oam.dev/type"
	// LabelTraitType is the trait that rendered an object, or AuxiliaryWorkload for a
	// component's own `outputs`.
	LabelTraitType = "trait.oam.dev/type"
	// LabelTraitResource is the key of the object under its template's `outputs`.
	LabelTraitResource = "trait.oam.dev/resource"
	// AnnotationPublishVersion is the Application annotation naming the version it publishes.
	AnnotationPublishVersion = "app.oam.dev/publishVersion"
)

// The values of LabelResourceType and the LabelTraitType of a component's own outputs.
const (
	ResourceTypeWorkload = "WORKLOAD"
	ResourceTypeTrait    = "TRAIT"
	AuxiliaryWorkload    = "AuxiliaryWorkload"
)
