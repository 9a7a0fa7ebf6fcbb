package keyrotation

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appservice/armappservice/v5"
)

// keyTypeFunction is the ARM keyType of host function keys (…/host/default/functionKeys/{name}).
const keyTypeFunction = "functionKeys"

// ARMHostKeys manages a function app's host function keys through Azure Resource Manager
// (armappservice WebAppsClient, api-version 2025-03-01): POST …/host/default/listkeys,
// PUT and DELETE …/host/default/functionKeys/{name}. The caller needs Website Contributor (or
// Contributor) on the app.
type ARMHostKeys struct {
	client                   *armappservice.WebAppsClient
	subscription, group, app string
}

// NewARMHostKeys returns the host keys of function app app in resource group group of
// subscription subscription. opts may be nil (public cloud); tests point its cloud
// configuration at a local ARM endpoint.
func NewARMHostKeys(subscription, group, app string, cred azcore.TokenCredential, opts *arm.ClientOptions) (*ARMHostKeys, error) {
	if subscription == "" || group == "" || app == "" {
		return nil, errors.New("function app: --subscription, --resource-group and --app are required")
	}
	c, err := armappservice.NewWebAppsClient(subscription, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("function app %s: %w", app, err)
	}
	return &ARMHostKeys{client: c, subscription: subscription, group: group, app: app}, nil
}

// List implements HostKeys (ListHostKeys; the master and system keys are left out).
func (a *ARMHostKeys) List(ctx context.Context) (map[string]string, error) {
	resp, err := a.client.ListHostKeys(ctx, a.group, a.app, nil)
	if err != nil {
		return nil, a.wrap("list host keys", err)
	}
	out := make(map[string]string, len(resp.FunctionKeys))
	for name, v := range resp.FunctionKeys {
		if v != nil {
			out[name] = *v
		}
	}
	return out, nil
}

// Create implements HostKeys (CreateOrUpdateHostSecret with no value: the host generates it).
func (a *ARMHostKeys) Create(ctx context.Context, name string) error {
	_, err := a.client.CreateOrUpdateHostSecret(ctx, a.group, a.app, keyTypeFunction, name, armappservice.KeyInfo{Name: &name}, nil)
	if err != nil {
		return a.wrap("create host key "+name, err)
	}
	return nil
}

// Delete implements HostKeys (DeleteHostSecret; 404 means already gone).
func (a *ARMHostKeys) Delete(ctx context.Context, name string) error {
	_, err := a.client.DeleteHostSecret(ctx, a.group, a.app, keyTypeFunction, name, nil)
	if err != nil {
		var re *azcore.ResponseError
		// The SDK expects 204; a 404 is a key that is already gone and a 200 a success too.
		if errors.As(err, &re) && (re.StatusCode == http.StatusNotFound || re.StatusCode == http.StatusOK) {
			return nil
		}
		return a.wrap("delete host key "+name, err)
	}
	return nil
}

// Describe implements HostKeys.
func (a *ARMHostKeys) Describe() string {
	return fmt.Sprintf("function app %s (resource group %s)", a.app, a.group)
}

// DeleteCommand implements HostKeys.
func (a *ARMHostKeys) DeleteCommand(name string) string {
	return fmt.Sprintf("az functionapp keys delete --subscription %s -g %s -n %s --key-type functionKeys --key-name %s",
		shellQuote(a.subscription), shellQuote(a.group), shellQuote(a.app), shellQuote(name))
}

// ValueCommand implements HostKeys.
func (a *ARMHostKeys) ValueCommand(name string) string {
	return fmt.Sprintf("az functionapp keys list --subscription %s -g %s -n %s --query %s -o tsv",
		shellQuote(a.subscription), shellQuote(a.group), shellQuote(a.app), shellQuote("functionKeys."+name))
}

// wrap keeps the status and ARM error code of a failure (the full SDK text repeats the request).
func (a *ARMHostKeys) wrap(op string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		hint := ""
		switch re.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			hint = " (you need Website Contributor or Contributor on the function app)"
		case http.StatusNotFound:
			hint = " (check --subscription, --resource-group and --app)"
		}
		return fmt.Errorf("%s: %s: ARM answered %d %s%s", a.Describe(), op, re.StatusCode, re.ErrorCode, hint)
	}
	return fmt.Errorf("%s: %s: %w", a.Describe(), op, err)
}
