package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/config"
	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/session"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

const sessionsUsage = `Usage:
  mcpgate sessions list   [--user <oid>] [--client <client_id>] [--json]
  mcpgate sessions revoke --user <oid> | --client <client_id> | --session <id>

List or end sessions (grants). They live in Redis, so these commands need the gateway's
Redis settings (--redis-url / MCPGATE_REDIS_URL, --redis-entra / MCPGATE_REDIS_ENTRA); they
need no session keys. A revoked session ends everywhere: its record is deleted and every
replica drops it from its cache within a second (Redis pub/sub). Sessions of a gateway
without Redis live only in that process's memory: restart it to end them.

The session ids shown are short hashes of the grant ids (as in the gateway's logs); no
token, grant id or other secret is ever printed.
`

// sessionsRedisSettings are the `mcpgate serve` settings the sessions commands reuse.
var sessionsRedisSettings = []string{"redis-url", "redis-entra"}

func runSessions(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, sessionsUsage)
		return errUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, sessionsUsage)
		return nil
	case "list":
		return sessionsList(ctx, args[1:], stdout, stderr)
	case "revoke":
		return sessionsRevoke(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "mcpgate sessions: unknown subcommand %q\n\n%s", args[0], sessionsUsage)
	return errUsage
}

// sessionsFlags binds the Redis settings of serve (flags and environment) onto fs.
func sessionsFlags(fs *flag.FlagSet, cfg *config.Serve) []config.Setting {
	var picked []config.Setting
	for _, s := range cfg.Settings() {
		if slices.Contains(sessionsRedisSettings, s.Flag) {
			picked = append(picked, s)
		}
	}
	config.Bind(fs, picked, os.Getenv)
	return picked
}

// openGrants connects to the gateway's Redis and returns a grants manager over it. It needs no
// session-key ring: listing and revoking never open a token.
func openGrants(ctx context.Context, cfg *config.Serve, settings []config.Setting) (*grants.Manager, func(), error) {
	if err := config.CheckEnv(settings, os.Getenv); err != nil {
		return nil, nil, fmt.Errorf("bad environment: %w", err)
	}
	if cfg.RedisURL == "" {
		return nil, nil, errors.New("no Redis configured (--redis-url or MCPGATE_REDIS_URL, as for `mcpgate serve`): " +
			"a gateway without Redis keeps its sessions in its own memory, which no other process can reach; restart it to end them all")
	}
	ropts := store.RedisOptions{URL: cfg.RedisURL}
	if cfg.RedisEntra {
		cp, err := redisEntraCredentials()
		if err != nil {
			return nil, nil, err
		}
		ropts.StreamingCredentialsProvider = cp
	}
	st, err := store.NewRedis(ctx, ropts)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to Redis (MCPGATE_REDIS_URL): %w", err)
	}
	keeper, err := session.NewPendingKeeper(func(context.Context) ([]byte, error) {
		return nil, errors.New("the sessions command holds no session keys")
	}, time.Hour, nil)
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	return grants.New(st, keeper, grants.Options{}), func() { _ = st.Close() }, nil
}

// sessionView is one session as printed: no token, no grant id, no upstream data.
type sessionView struct {
	Session     string    `json:"session"`
	UserOID     string    `json:"user_oid"`
	Username    string    `json:"username,omitempty"`
	Name        string    `json:"name,omitempty"`
	TenantID    string    `json:"tenant_id,omitempty"`
	ClientID    string    `json:"client_id"`
	Resource    string    `json:"resource"`
	Scope       string    `json:"scope,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	RefreshedAt time.Time `json:"refreshed_at,omitzero"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func viewOf(g grants.Grant) sessionView {
	return sessionView{Session: grants.LogID(g.ID), UserOID: g.User.ID(), Username: g.User.Username, Name: g.User.Name,
		TenantID: g.User.TenantID, ClientID: g.ClientID, Resource: g.Resource, Scope: g.Scope,
		CreatedAt: g.CreatedAt, RefreshedAt: g.RefreshedAt, ExpiresAt: g.ExpiresAt}
}

func sessionsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config.Serve
	fs := newFlagSet("sessions list [--user <oid>] [--client <client_id>] [--json]", "List sessions without secrets, oldest first.", stderr)
	settings := sessionsFlags(fs, &cfg)
	user := fs.String("user", "", "only sessions of this user (Entra object id, or the subject for other IdPs)")
	client := fs.String("client", "", "only sessions of this OAuth client id")
	asJSON := fs.Bool("json", false, "print JSON (one array) instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	m, closeStore, err := openGrants(ctx, &cfg, settings)
	if err != nil {
		return err
	}
	defer closeStore()
	var list []grants.Grant
	if *user == "" && *client == "" {
		list, err = m.ListAll(ctx)
	} else {
		list, err = m.List(ctx, grants.Filter{UserID: *user, ClientID: *client})
	}
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	views := make([]sessionView, 0, len(list))
	for _, g := range list {
		views = append(views, viewOf(g))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(views)
	}
	if len(views) == 0 {
		fmt.Fprintln(stdout, "no sessions")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tUSER\tUSERNAME\tCLIENT\tCREATED\tLAST REFRESH\tEXPIRES")
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Session, printable(v.UserOID), printable(orDash(v.Username)),
			printable(v.ClientID), ts(v.CreatedAt), ts(v.RefreshedAt), ts(v.ExpiresAt))
	}
	return tw.Flush()
}

func sessionsRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config.Serve
	fs := newFlagSet("sessions revoke --user <oid> | --client <client_id> | --session <id>",
		"End sessions everywhere: every replica drops them within a second.", stderr)
	settings := sessionsFlags(fs, &cfg)
	user := fs.String("user", "", "end every session of this user (Entra object id, or the subject for other IdPs)")
	client := fs.String("client", "", "end every session of this OAuth client id")
	sess := fs.String("session", "", "end one session (its id from `mcpgate sessions list`)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	n := 0
	for _, v := range []string{*user, *client, *sess} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		fmt.Fprintln(stderr, "give exactly one of --user, --client or --session")
		fs.Usage()
		return errUsage
	}
	m, closeStore, err := openGrants(ctx, &cfg, settings)
	if err != nil {
		return err
	}
	defer closeStore()
	switch {
	case *user != "":
		n, err := m.RevokeUser(ctx, *user)
		if err != nil {
			return fmt.Errorf("revoke the sessions of user %s: %w", *user, err)
		}
		fmt.Fprintf(stdout, "revoked %d session(s) of user %s\n", n, *user)
	case *client != "":
		n, err := m.RevokeClient(ctx, *client)
		if err != nil {
			return fmt.Errorf("revoke the sessions of client %s: %w", *client, err)
		}
		fmt.Fprintf(stdout, "revoked %d session(s) of client %s\n", n, *client)
	default:
		id := strings.ToLower(strings.TrimSpace(*sess))
		all, err := m.ListAll(ctx)
		if err != nil {
			return fmt.Errorf("find session %s: %w", id, err)
		}
		var found *grants.Grant
		for i := range all {
			if grants.LogID(all[i].ID) == id {
				found = &all[i]
				break
			}
		}
		if found == nil {
			return fmt.Errorf("no session %q (see `mcpgate sessions list`)", *sess)
		}
		if err := m.Revoke(ctx, found.ID); err != nil {
			return fmt.Errorf("revoke session %s: %w", id, err)
		}
		fmt.Fprintf(stdout, "revoked session %s of user %s (client %s)\n", id, printable(found.User.ID()), printable(found.ClientID))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable keeps stored, IdP- or client-supplied strings from carrying terminal control
// characters into the operator's terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
