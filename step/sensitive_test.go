package step_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stepflow/stepflow/api/v1alpha1"
	"github.com/stepflow/stepflow/engine"
	"github.com/stepflow/stepflow/provider/builtin"
	"github.com/stepflow/stepflow/step"
)

// vault is a fake provider of secrets: #Get returns the secret of a key, marked sensitive
// unless the key starts with "plain", or fails quoting it when the key is "broken".
const vaultPackage = `
#Get: {
	#provider: "vault"
	#do:       "get"
	$params: key: string
	$returns?: value: string
	...
}
`

func vaultRunner(templates defs) *step.Runner {
	reg := step.NewRegistry()
	builtin.Register(reg)
	reg.AddPackage(step.Package{Path: "vela/vault", Source: vaultPackage})
	reg.Register(step.Action{Provider: "vault", Do: "get", Run: func(_ context.Context, c *step.Call) (any, error) {
		key, _ := c.Params["key"].(string)
		secret := "s3cr3t-of-" + key
		if !strings.HasPrefix(key, "plain") {
			c.Sensitive(secret)
		}
		if key == "broken" {
			return nil, errors.New("the vault refused " + secret)
		}
		return map[string]any{"value": secret}, nil
	}})
	return step.NewRunner(step.Options{Registry: reg, Definitions: templates})
}

func TestActionsMarkValuesSensitive(t *testing.T) {
	r := vaultRunner(defs{"use": `
import ("vela/builtin", "vela/vault")
get: vault.#Get & {$params: key: parameter.key}
msg: builtin.#Message & {$params: message: "the token is \(get.$returns.value)"}
parameter: key: string
`})
	req := request("use", map[string]any{"key": "db"})
	req.Step.Outputs = v1alpha1.StepOutputs{{Name: "token", ValueFrom: "get.$returns.value"}}
	res := mustRun(t, r, req)
	wantOutcome(t, res, engine.Succeeded, "")
	if !slices.Equal(res.Sensitive, []string{"s3cr3t-of-db"}) {
		t.Errorf("Sensitive = %q", res.Sensitive)
	}
	// The step itself sees the real value: redaction is for what shows the run.
	if res.Message != "the token is s3cr3t-of-db" || string(res.Outputs["token"]) != `"s3cr3t-of-db"` {
		t.Errorf("message %q, output %s", res.Message, res.Outputs["token"])
	}

	// Marked before the action failed: the error that quotes it comes with it.
	res, err := r.RunStep(context.Background(), request("use", map[string]any{"key": "broken"}))
	if err == nil || !strings.Contains(err.Error(), "s3cr3t-of-broken") {
		t.Fatalf("err = %v", err)
	}
	if res == nil || !slices.Contains(res.Sensitive, "s3cr3t-of-broken") {
		t.Errorf("the failing action's value is not marked: %+v", res)
	}
}

func TestSensitiveAttributeMarksParameters(t *testing.T) {
	r := vaultRunner(defs{"deploy": `
import "vela/builtin"

#Secret: close({value: string @sensitive()}) | close({secretRef: {name: string, key: string}})

parameter: {
	token:  string @sensitive()
	user:   string
	short?: string @sensitive()
	db: {
		host:     string
		password: string @sensitive()
	}
	url: #Secret
	creds?: {...} @sensitive()
	count: int
}
msg: builtin.#Message & {$params: message: "deploying as \(parameter.user)"}
`})
	props := map[string]any{
		"token": "tok-111111", "user": "deployer", "short": "abc",
		"db":    map[string]any{"host": "db.internal", "password": "pw-222222"},
		"url":   map[string]any{"value": "https://hooks.example/333333"},
		"creds": map[string]any{"key": "key-444444", "n": 555555},
		"count": 3,
	}
	res := mustRun(t, r, request("deploy", props))
	wantOutcome(t, res, engine.Succeeded, "")
	want := []string{"555555", "https://hooks.example/333333", "key-444444", "pw-222222", "tok-111111"}
	if !slices.Equal(res.Sensitive, want) {
		t.Errorf("Sensitive = %q, want %q", res.Sensitive, want)
	}

	// A parameter that does not fit is still marked: the failure's message may quote it.
	props["count"] = "tok-999999"
	props["token"] = "tok-999999"
	res = mustRun(t, r, request("deploy", props))
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonParameter)
	if !slices.Contains(res.Sensitive, "tok-999999") {
		t.Errorf("Sensitive = %q after a parameter error: %s", res.Sensitive, res.Message)
	}

	// Without the attribute nothing is marked.
	r = vaultRunner(defs{"plain": `parameter: token: string`})
	if res := mustRun(t, r, request("plain", map[string]any{"token": "tok-111111"})); len(res.Sensitive) != 0 {
		t.Errorf("Sensitive = %q without @sensitive()", res.Sensitive)
	}
}

// A field of the template computed from an action's result is marked by its attribute as
// soon as it is concrete, before the actions after it run.
func TestSensitiveAttributeMarksComputedFields(t *testing.T) {
	r := vaultRunner(defs{"read": `
import ("vela/builtin", "vela/vault")
get: vault.#Get & {$params: key: "plain-db"}
token: "Bearer \(get.$returns.value)" @sensitive()
show: builtin.#Fail & {$params: message: "cannot use \(token)"}
`})
	res := mustRun(t, r, request("read", nil))
	wantOutcome(t, res, engine.Failed, v1alpha1.ReasonAction)
	if !slices.Equal(res.Sensitive, []string{"Bearer s3cr3t-of-plain-db"}) {
		t.Errorf("Sensitive = %q (message %q)", res.Sensitive, res.Message)
	}
}
