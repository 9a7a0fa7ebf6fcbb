package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/mcpgate/mcpgate/gateway/internal/keyrotation"
	"github.com/mcpgate/mcpgate/gateway/internal/secretsrc"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

// localRingFile is the local session-key ring (MCPGATE_SESSION_KEYS_FILE's default).
const localRingFile = ".mcpgate/session-keys.json"

func secretsUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: mcpgate secrets <generate|rotate|list> [flags]

  generate   create the session-key ring if it does not exist (idempotent; --force replaces it,
             which ends every session)
  rotate     rotate the ring with no invalid token: add a "next" key; once every gateway
             holds it, promote it to "active" (the old active key becomes "retired" and still
             opens tokens); drop retired keys older than --retire-after. With --gateway-url it
             asks the gateway's /readyz?replicas=1 which keys every replica holds; without,
             it assumes every replica has reloaded after one reload interval (1 min,
             MCPGATE_SESSION_KEYS_RELOAD_INTERVAL). Run it twice, or once with --wait.
  list       show key ids, states and dates (never key material)

The ring lives in a file (--file, default `+localRingFile+`) or a Key Vault secret
(--keyvault-url and --secret). See docs/keys.md.
`)
}

func runSecrets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		secretsUsage(stderr)
		return errUsage
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		secretsUsage(stdout)
		return nil
	case "generate", "rotate", "list":
	default:
		fmt.Fprintf(stderr, "mcpgate secrets: unknown subcommand %q\n\n", sub)
		secretsUsage(stderr)
		return errUsage
	}
	summaries := map[string]string{
		"generate": "Create the session-key ring when it is missing (an existing valid ring is kept).",
		"rotate":   "Rotate the session-key ring: next → active → retired (see mcpgate secrets --help).",
		"list":     "List the session-key ring's key ids, states and dates (never key material).",
	}
	fs := newFlagSet("secrets "+sub, summaries[sub], stderr)
	file := fs.String("file", localRingFile, "ring file (MCPGATE_SESSION_KEYS_FILE)")
	vaultURL := fs.String("keyvault-url", "", "Key Vault holding the ring (with --secret)")
	secret := fs.String("secret", "", "Key Vault secret name of the ring (MCPGATE_SESSION_KEYS_SECRET)")
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	var force, wait bool
	var reload, retire, timeout time.Duration
	var gatewayURL string
	switch sub {
	case "generate":
		fs.BoolVar(&force, "force", false, "replace an existing ring: every session and token stops working")
	case "rotate":
		fs.BoolVar(&wait, "wait", false, "after adding the next key, wait until every gateway holds it (one reload interval, or what --gateway-url reports) and promote it")
		fs.DurationVar(&reload, "reload-interval", session.DefaultReloadInterval, "how often the gateways reload the ring (MCPGATE_SESSION_KEYS_RELOAD_INTERVAL); used without --gateway-url")
		fs.StringVar(&gatewayURL, "gateway-url", "", "gateway base URL: promote once /readyz?replicas=1 shows every replica holding the next key (e.g. "+localGatewayURL+")")
		fs.DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait and --gateway-url: how long to wait for every replica")
		fs.DurationVar(&retire, "retire-after", 720*time.Hour, "drop retired keys older than this (the longest refresh-token lifetime, MCPGATE_REFRESH_TOKEN_TTL)")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if (*vaultURL == "") != (*secret == "") {
		fmt.Fprintln(stderr, "--keyvault-url and --secret go together")
		fs.Usage()
		return errUsage
	}
	var store keyrotation.Secret
	if *vaultURL != "" {
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return fmt.Errorf("get an Azure credential (az login, or AZURE_* variables): %w", err)
		}
		kv, err := secretsrc.NewKeyVault(*vaultURL, *secret, cred, nil)
		if err != nil {
			return err
		}
		store = kv
	} else {
		store = secretsrc.NewFile(*file)
	}
	var res *keyrotation.RingResult
	var err error
	switch sub {
	case "generate":
		res, err = keyrotation.GenerateRing(ctx, store, force, time.Now())
	case "rotate":
		res, err = keyrotation.RotateRing(ctx, store, keyrotation.RingRotateOptions{
			ReloadInterval: reload, RetireAfter: retire, Wait: wait, Progress: stderr,
			GatewayURL: gatewayURL, Timeout: timeout,
		})
	case "list":
		res, err = keyrotation.ListRing(ctx, store)
	}
	if *asJSON && res != nil {
		if jerr := writeJSON(stdout, res); jerr != nil && err == nil {
			err = jerr
		}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return nil
	}
	if res.Action == "replaced" {
		fmt.Fprintln(stderr, res.Message)
	} else {
		fmt.Fprintln(stdout, res.Message)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tSTATE\tCREATED\tRETIRED")
	for _, k := range res.Keys {
		retired := "-"
		if !k.Retired.IsZero() {
			retired = k.Retired.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.KID, k.State, k.Created.Format(time.RFC3339), retired)
	}
	return tw.Flush()
}
