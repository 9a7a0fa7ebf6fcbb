package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/mcpgate/mcpgate/gateway/internal/funckey"
	"github.com/mcpgate/mcpgate/gateway/internal/keyrotation"
	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc"
)

// Local defaults, as scripts/run-local.sh lays out .mcpgate/.
const (
	localSecretsDir  = ".mcpgate/secrets"
	localKeyFile     = ".mcpgate/function-key"
	localGatewayURL  = "http://127.0.0.1:8000"
	localFunctionURL = "http://127.0.0.1:7071"
)

func keysUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: mcpgate keys <list|rotate> [flags]

  list     list the function app's host function keys (names and fingerprints, never values)
  rotate   rotate the gateway's function key with no failed request: create a new key on the
           function app, wait until it accepts it, publish it where the gateways read it, wait
           until every gateway replica uses it, delete the old key(s)

Azure:  mcpgate keys rotate --subscription S --resource-group RG --app APP \
          --keyvault-url https://VAULT.vault.azure.net --secret function-key --gateway-url https://GATEWAY
Local:  mcpgate keys rotate --local .mcpgate/secrets   (defaults match scripts/run-local.sh)

Run `+"`mcpgate keys rotate --help`"+` for every flag. See docs/keys.md.
`)
}

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		keysUsage(stderr)
		return errUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		keysUsage(stdout)
		return nil
	case "list":
		return runKeysCmd(ctx, "list", args[1:], stdout, stderr)
	case "rotate":
		return runKeysCmd(ctx, "rotate", args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "mcpgate keys: unknown subcommand %q\n\n", args[0])
		keysUsage(stderr)
		return errUsage
	}
}

// keysFlags are the flags of keys list and keys rotate.
type keysFlags struct {
	subscription, group, app, keyName string
	vaultURL, secret, keyFile, local  string
	gatewayURL, functionURL           string
	json, dryRun, ifMissing           bool
	timeout, hostCacheWait, poll      time.Duration
	set                               map[string]bool
}

func parseKeysFlags(sub string, args []string, stderr io.Writer) (*keysFlags, error) {
	summary := "List the function app's host function keys (names, fingerprints; never values)."
	if sub == "rotate" {
		summary = "Rotate the gateway's function key: create, accept, publish, wait for the gateways, delete the old key.\n" +
			"Progress goes to stderr; a failure stops before anything is deleted and says how to resume (re-run) or roll back."
	}
	fs := newFlagSet("keys "+sub, summary, stderr)
	f := &keysFlags{}
	fs.StringVar(&f.subscription, "subscription", "", "Azure subscription id of the function app")
	fs.StringVar(&f.group, "resource-group", "", "resource group of the function app")
	fs.StringVar(&f.app, "app", "", "function app name")
	fs.StringVar(&f.keyName, "key-name", keyrotation.DefaultFamily, "the gateway's key family: keys NAME and NAME-<UTC timestamp> (never the master key)")
	fs.StringVar(&f.vaultURL, "keyvault-url", "", "Key Vault holding the published key (with --secret)")
	fs.StringVar(&f.secret, "secret", "", "Key Vault secret name the gateways read (MCPGATE_FUNCTION_KEY_SECRET)")
	fs.StringVar(&f.keyFile, "key-file", "", "publish to this one-line file instead (MCPGATE_FUNCTION_KEY_FILE; --local default "+localKeyFile+")")
	fs.StringVar(&f.local, "local", "", "standalone function app: its secrets directory or host.json (e.g. "+localSecretsDir+")")
	fs.StringVar(&f.gatewayURL, "gateway-url", "", "gateway base URL: wait on /readyz?replicas=1 until every replica uses the new key (--local default "+localGatewayURL+")")
	fs.StringVar(&f.functionURL, "function-url", "", "function app base URL to probe with the new key (--local default "+localFunctionURL+"); without it, wait --host-cache-wait")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON on stdout")
	if sub == "rotate" {
		fs.BoolVar(&f.dryRun, "dry-run", false, "print the plan and change nothing")
		fs.BoolVar(&f.ifMissing, "if-missing", false, "do nothing when a key of the app is already published (deployment hook)")
		fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "bound on each wait (the function app accepting the key; the gateways using it)")
		fs.DurationVar(&f.hostCacheWait, "host-cache-wait", 65*time.Second, "without a reachable --function-url: wait this long after creating the key (the host reloads keys at most once a minute)")
		fs.DurationVar(&f.poll, "poll", time.Second, "interval between probes")
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	bad := func(msg string) (*keysFlags, error) {
		fmt.Fprintln(stderr, msg)
		fs.Usage()
		return nil, errUsage
	}
	azure := f.subscription != "" || f.group != "" || f.app != ""
	switch {
	case f.local != "" && azure:
		return bad("--local cannot be combined with --subscription, --resource-group or --app")
	case f.local == "" && (f.subscription == "" || f.group == "" || f.app == ""):
		return bad("give --subscription, --resource-group and --app (Azure), or --local DIR (standalone function app)")
	case (f.vaultURL == "") != (f.secret == ""):
		return bad("--keyvault-url and --secret go together")
	case f.vaultURL != "" && f.keyFile != "":
		return bad("publish to Key Vault (--keyvault-url, --secret) or to a file (--key-file), not both")
	}
	if f.local != "" {
		if f.vaultURL == "" && f.keyFile == "" {
			f.keyFile = localKeyFile
		}
		if !f.set["gateway-url"] {
			f.gatewayURL = localGatewayURL
		}
		if !f.set["function-url"] {
			f.functionURL = localFunctionURL
		}
	} else if sub == "rotate" && f.vaultURL == "" && f.keyFile == "" {
		return bad("give the publishing target: --keyvault-url and --secret, or --key-file")
	}
	if err := keyrotation.ValidFamily(f.keyName); err != nil {
		return bad(err.Error())
	}
	return f, nil
}

// targets builds the function app's keys and the publishing target (nil if none given).
func (f *keysFlags) targets() (keyrotation.HostKeys, keyrotation.Secret, error) {
	var cred *azidentity.DefaultAzureCredential
	getCred := func() (*azidentity.DefaultAzureCredential, error) {
		if cred != nil {
			return cred, nil
		}
		c, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("get an Azure credential (az login, or AZURE_* variables): %w", err)
		}
		cred = c
		return c, nil
	}
	var hk keyrotation.HostKeys
	if f.local != "" {
		hk = keyrotation.NewLocalHostFile(f.local)
	} else {
		c, err := getCred()
		if err != nil {
			return nil, nil, err
		}
		if hk, err = keyrotation.NewARMHostKeys(f.subscription, f.group, f.app, c, nil); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case f.vaultURL != "":
		c, err := getCred()
		if err != nil {
			return nil, nil, err
		}
		kv, err := secretsrc.NewKeyVault(f.vaultURL, f.secret, c, nil)
		if err != nil {
			return nil, nil, err
		}
		return hk, kv, nil
	case f.keyFile != "":
		return hk, secretsrc.NewFile(f.keyFile), nil
	}
	return hk, nil, nil
}

func runKeysCmd(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	f, err := parseKeysFlags(sub, args, stderr)
	if err != nil {
		return err
	}
	hk, pub, err := f.targets()
	if err != nil {
		return err
	}
	if sub == "list" {
		return keysList(ctx, f, hk, pub, stdout)
	}
	res, err := keyrotation.Rotate(ctx, keyrotation.Config{
		Keys: hk, Publish: pub, Family: f.keyName, GatewayURL: f.gatewayURL, FunctionURL: f.functionURL,
		Timeout: f.timeout, Poll: f.poll, HostCacheWait: f.hostCacheWait, IfMissing: f.ifMissing, DryRun: f.dryRun,
		Progress: stderr,
	})
	if f.json && res != nil {
		if jerr := writeJSON(stdout, res); jerr != nil && err == nil {
			err = jerr
		}
	}
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if !f.json {
		switch res.Action {
		case "planned":
			fmt.Fprintf(stdout, "plan: %s\n", planLine(res.Plan))
		case "unchanged":
			fmt.Fprintln(stdout, res.Plan.Skip)
		default:
			fmt.Fprintf(stdout, "%s: the gateways' key is now %s (fingerprint %s); deleted: %v; took %.1fs\n",
				res.Action, res.NewKey, res.NewFingerprint, res.Deleted, res.Seconds)
			if len(res.Kept) > 0 {
				fmt.Fprintf(stdout, "kept (not confirmed unused, re-run with --gateway-url to delete): %v\n", res.Kept)
			}
		}
	}
	return nil
}

func planLine(p keyrotation.Plan) string {
	s := fmt.Sprintf("new key %s (create: %t, publish: %t), delete after the gateways switch: %v", p.NewKey, p.Create, p.Publish, p.Delete)
	if p.Resume != "" {
		s += "; resuming: " + p.Resume
	}
	return s
}

// keyInfo is one row of keys list.
type keyInfo struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	Gateway     bool   `json:"gateway_family"`
	Published   bool   `json:"published"`
}

func keysList(ctx context.Context, f *keysFlags, hk keyrotation.HostKeys, pub keyrotation.Secret, stdout io.Writer) error {
	keys, err := hk.List(ctx)
	if err != nil {
		return err
	}
	var published string
	if pub != nil {
		b, err := pub.Get(ctx)
		switch {
		case err == nil:
			published = firstLine(b)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	rows := make([]keyInfo, 0, len(keys))
	for name, v := range keys {
		rows = append(rows, keyInfo{Name: name, Fingerprint: funckey.Fingerprint(v), Gateway: keyrotation.InFamily(f.keyName, name), Published: published != "" && v == published})
	}
	slices.SortFunc(rows, func(a, b keyInfo) int { return strings.Compare(a.Name, b.Name) })
	if f.json {
		return writeJSON(stdout, map[string]any{"app": hk.Describe(), "keys": rows})
	}
	fmt.Fprintf(stdout, "host function keys of %s:\n", hk.Describe())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFINGERPRINT\tGATEWAY\tPUBLISHED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Fingerprint, yes(r.Gateway), yes(r.Published))
	}
	return tw.Flush()
}

// firstLine is the first line of b, trimmed (a one-line key file or secret).
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(s)
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
