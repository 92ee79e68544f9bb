// Package definitions holds stepflow's built-in step types: the WorkflowStepDefinitions that
// KubeVela Workflow ships, with the same names and parameters, written in CUE and compiled into
// the binary. A definition stored in a run's namespace or in vela-system takes precedence.
//
// Each template is a file cue/<type>.cue whose first line is a comment describing the type.
package definitions

import (
	"embed"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow/stepflow/api/v1beta1"
)

//go:embed cue/*.cue
var files embed.FS

// Template returns the CUE template of the built-in step type typ.
func Template(typ string) (string, bool) {
	if strings.ContainsAny(typ, "/\\") {
		return "", false
	}
	b, err := files.ReadFile("cue/" + typ + ".cue")
	if err != nil {
		return "", false
	}
	return string(b), true
}

// Builtin returns every built-in step type as a WorkflowStepDefinition without a namespace,
// sorted by name, with its description in the definition.oam.dev/description annotation.
func Builtin() []*v1beta1.WorkflowStepDefinition {
	entries, _ := files.ReadDir("cue")
	out := make([]*v1beta1.WorkflowStepDefinition, 0, len(entries))
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".cue")
		tmpl, _ := Template(name)
		out = append(out, &v1beta1.WorkflowStepDefinition{
			TypeMeta: metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindWorkflowStepDefinition},
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{v1beta1.AnnotationDescription: description(tmpl)},
			},
			Spec: v1beta1.WorkflowStepDefinitionSpec{Schematic: &v1beta1.Schematic{CUE: &v1beta1.CUE{Template: tmpl}}},
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// description is the text of a template's first line when it is a comment.
func description(tmpl string) string {
	first, _, _ := strings.Cut(tmpl, "\n")
	if d, ok := strings.CutPrefix(first, "//"); ok {
		return strings.TrimSpace(d)
	}
	return ""
}
