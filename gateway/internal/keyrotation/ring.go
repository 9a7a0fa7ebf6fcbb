package keyrotation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/session"
)

// RingKey describes one key of the session-key ring, without its secret.
type RingKey struct {
	KID     string    `json:"kid"`
	State   string    `json:"state"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"`
}

// RingResult is the outcome of a ring command.
type RingResult struct {
	// Action: created, kept, replaced, listed, added-next, promoted.
	Action string `json:"action"`
	Target string `json:"target"`
	// Keys is the ring after the command.
	Keys []RingKey `json:"keys"`
	// Added is the kid of a key added as next; Promoted the kid made active; Dropped the
	// retired kids removed.
	Added    string   `json:"added,omitempty"`
	Promoted string   `json:"promoted,omitempty"`
	Dropped  []string `json:"dropped,omitempty"`
	// PromoteAfter is when the next key may be promoted (every replica has reloaded by then);
	// unset with a gateway URL, where the replicas say when.
	PromoteAfter time.Time `json:"promote_after,omitzero"`
	// Message is a human summary (warnings included).
	Message string `json:"message"`
}

// ErrTooEarly is returned by RotateRing (without Wait) when the next key is younger than one
// reload interval, or with GatewayURL not yet held by every replica: promoting it now could
// seal tokens that a replica cannot open yet.
var ErrTooEarly = errors.New("too early to promote the next session key")

func describeRing(r *session.Ring) []RingKey {
	keys := r.Keys()
	out := make([]RingKey, len(keys))
	for i, k := range keys {
		out[i] = RingKey{KID: k.ID, State: string(k.State), Created: k.Created, Retired: k.Retired}
	}
	return out
}

func loadRing(ctx context.Context, s Secret) (*session.Ring, error) {
	doc, err := s.Get(ctx)
	if err != nil {
		if isNotExist(err) {
			return nil, fmt.Errorf("session-key ring %s does not exist: create it with `mcpgate secrets generate`: %w", s.Describe(), err)
		}
		return nil, fmt.Errorf("session-key ring %s: %w", s.Describe(), err)
	}
	r, err := session.ParseRing(doc)
	if err != nil {
		return nil, fmt.Errorf("session-key ring %s: %w", s.Describe(), err)
	}
	return r, nil
}

func saveRing(ctx context.Context, s Secret, r *session.Ring) error {
	doc, err := r.Marshal()
	if err != nil {
		return err
	}
	if err := s.Put(ctx, doc); err != nil {
		return fmt.Errorf("session-key ring %s: %w", s.Describe(), err)
	}
	return nil
}

// GenerateRing creates a ring with one active key in s when s holds none (idempotent: a valid
// ring is kept). With force it replaces whatever s holds, which invalidates every session
// and token sealed with the old keys. An existing invalid ring is an error without force.
func GenerateRing(ctx context.Context, s Secret, force bool, now time.Time) (*RingResult, error) {
	res := &RingResult{Target: s.Describe()}
	doc, err := s.Get(ctx)
	switch {
	case err != nil && !isNotExist(err):
		return nil, fmt.Errorf("session-key ring %s: %w", s.Describe(), err)
	case err == nil && !force:
		r, perr := session.ParseRing(doc)
		if perr != nil {
			return nil, fmt.Errorf("session-key ring %s exists but is invalid (%w); replace it with --force, which ends every session", s.Describe(), perr)
		}
		res.Action, res.Keys = "kept", describeRing(r)
		res.Message = "a valid session-key ring already exists in " + s.Describe() + "; left unchanged"
		return res, nil
	}
	existed := err == nil
	k, err := session.NewKey(session.StateActive, now)
	if err != nil {
		return nil, err
	}
	r, err := session.NewRing(k)
	if err != nil {
		return nil, err
	}
	if err := saveRing(ctx, s, r); err != nil {
		return nil, err
	}
	res.Keys = describeRing(r)
	res.Action, res.Message = "created", "created a session-key ring with active key "+k.ID+" in "+s.Describe()
	if existed {
		res.Action = "replaced"
		res.Message = "WARNING: replaced the session-key ring in " + s.Describe() + ": every session and token issued so far stops working once the gateways reload it (within a minute); clients must sign in again"
	}
	return res, nil
}

// ListRing describes the ring in s (never the key material).
func ListRing(ctx context.Context, s Secret) (*RingResult, error) {
	r, err := loadRing(ctx, s)
	if err != nil {
		return nil, err
	}
	return &RingResult{Action: "listed", Target: s.Describe(), Keys: describeRing(r), Message: fmt.Sprintf("%d key(s), active %s", len(r.Keys()), r.ActiveID())}, nil
}

// RingRotateOptions tune RotateRing.
type RingRotateOptions struct {
	// ReloadInterval is how often the gateways reload the ring (default 1 min): a next key
	// is promoted only once it is at least this old (plus one second: created times are
	// whole seconds).
	ReloadInterval time.Duration
	// RetireAfter is how long a retired key keeps opening tokens (default 720 h, the default
	// refresh-token lifetime MCPGATE_REFRESH_TOKEN_TTL): older retired keys are dropped.
	RetireAfter time.Duration
	// Wait: wait for the reload interval (or, with GatewayURL, for every replica to hold the
	// next key) instead of stopping after adding the next key.
	Wait bool
	// GatewayURL, when set, is the base URL of the gateway (any replica): its
	// /readyz?replicas=1 lists the session-key ids each live replica holds, and the next key
	// is promoted as soon as every replica holds it, instead of after ReloadInterval. A
	// replica that cannot read the ring (Key Vault access, a wrong file) then holds the
	// promotion back instead of rejecting every token sealed with the new key.
	GatewayURL string
	// HTTPClient probes GatewayURL (default: 10 s timeout).
	HTTPClient *http.Client
	// Timeout bounds the wait for the replicas (default 10 min); Poll is the interval between
	// probes (default 2 s).
	Timeout, Poll time.Duration
	// Progress receives one line per step (default: discard).
	Progress io.Writer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// RotateRing runs DESIGN's ring rotation. Without a next key it adds one and, unless Wait,
// stops: run it again after PromoteAfter. With a next key at least one reload interval old
// it promotes it (the active key becomes retired) and drops retired keys older than
// RetireAfter. A next key that is too young gives ErrTooEarly (or, with Wait, a wait).
func RotateRing(ctx context.Context, s Secret, o RingRotateOptions) (*RingResult, error) {
	if o.ReloadInterval <= 0 {
		o.ReloadInterval = session.DefaultReloadInterval
	}
	if o.RetireAfter <= 0 {
		o.RetireAfter = 720 * time.Hour
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	res := &RingResult{Target: s.Describe()}
	r, err := loadRing(ctx, s)
	if err != nil {
		return nil, err
	}
	next, ok := newestNext(r)
	if !ok {
		k, err := session.NewKey(session.StateNext, o.Now())
		if err != nil {
			return nil, err
		}
		if r, err = r.WithKey(k); err != nil {
			return nil, err
		}
		if err := saveRing(ctx, s, r); err != nil {
			return nil, err
		}
		next, res.Added = k, k.ID
		fmt.Fprintf(o.Progress, "added next key %s to %s: every gateway learns it at its next reload (within %s)\n", k.ID, s.Describe(), o.ReloadInterval)
	}
	var ready, waited bool // every gateway holds the next key; we waited for that
	var pending string     // for the message when not ready
	if o.GatewayURL != "" {
		if ready, waited, pending, err = ringReplicasReady(ctx, o, next.ID); err != nil {
			return nil, err
		}
	} else {
		res.PromoteAfter = next.Created.Add(o.ReloadInterval + time.Second)
		wait := res.PromoteAfter.Sub(o.Now())
		ready = wait <= 0
		if !ready && o.Wait {
			fmt.Fprintf(o.Progress, "waiting %s until every gateway has reloaded the ring\n", wait.Round(time.Second))
			if err := sleep(ctx, wait); err != nil {
				return nil, err
			}
			ready, waited = true, true
		}
	}
	if !ready {
		res.Action, res.Keys = "added-next", describeRing(r)
		if res.Added == "" {
			res.Action = "waiting"
			if o.GatewayURL != "" {
				res.Message = fmt.Sprintf("next key %s is not held by every gateway replica yet (%s): run `mcpgate secrets rotate` again shortly, or pass --wait", next.ID, pending)
			} else {
				res.Message = fmt.Sprintf("next key %s is younger than one reload interval (%s): run `mcpgate secrets rotate` again after %s, or pass --wait",
					next.ID, o.ReloadInterval, res.PromoteAfter.Format(time.RFC3339))
			}
			return res, fmt.Errorf("%w: %s", ErrTooEarly, res.Message)
		}
		if o.GatewayURL != "" {
			res.Message = fmt.Sprintf("added next key %s; once every gateway replica holds it (%s), run `mcpgate secrets rotate` again to promote it, or pass --wait", next.ID, pending)
		} else {
			res.Message = fmt.Sprintf("added next key %s; run `mcpgate secrets rotate` again after %s (one reload interval, %s) to promote it, or pass --wait",
				next.ID, res.PromoteAfter.Format(time.RFC3339), o.ReloadInterval)
		}
		return res, nil
	}
	if waited {
		// Re-read: promote what the store holds now.
		if r, err = loadRing(ctx, s); err != nil {
			return nil, err
		}
		if n, found := newestNext(r); !found || n.ID != next.ID {
			return nil, fmt.Errorf("session-key ring %s changed while waiting (next key %s is gone); nothing promoted: run the command again", s.Describe(), next.ID)
		}
	}
	now := o.Now()
	prev := r.ActiveID()
	if r, err = r.Promote(next.ID, now); err != nil {
		return nil, err
	}
	r, dropped, err := r.DropRetired(now.Add(-o.RetireAfter))
	if err != nil {
		return nil, err
	}
	if err := saveRing(ctx, s, r); err != nil {
		return nil, err
	}
	res.Action, res.Promoted, res.Dropped, res.Keys = "promoted", next.ID, dropped, describeRing(r)
	res.Message = fmt.Sprintf("promoted %s to active; %s is retired and keeps opening tokens for %s", next.ID, prev, o.RetireAfter)
	if len(dropped) > 0 {
		res.Message += fmt.Sprintf("; dropped retired keys older than that: %v", dropped)
	}
	return res, nil
}

// ringReplicasReady asks o.GatewayURL whether every live replica holds session key kid: once
// without o.Wait (pending then says which replicas do not), else until they all do or
// o.Timeout passes (an error that names them).
func ringReplicasReady(ctx context.Context, o RingRotateOptions, kid string) (ready, waited bool, pending string, err error) {
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	timeout, poll := o.Timeout, o.Poll
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	if poll <= 0 {
		poll = 2 * time.Second
	}
	holds := func(rep Replica) (string, bool) {
		if slices.Contains(rep.RingKeyIDs, kid) {
			return "", true
		}
		if len(rep.RingKeyIDs) == 0 {
			return "reports no session keys: a gateway older than this command?", false
		}
		return "holds " + strings.Join(rep.RingKeyIDs, " "), false
	}
	if !o.Wait {
		reps, err := GatewayReplicas(ctx, hc, o.GatewayURL)
		if err != nil {
			return false, false, "", fmt.Errorf("cannot tell whether every gateway replica holds next key %s, so nothing was promoted: %w", kid, err)
		}
		behind := replicasBehind(reps, holds)
		return len(behind) == 0, false, strings.Join(behind, ", "), nil
	}
	fmt.Fprintf(o.Progress, "waiting until every gateway replica listed by %s holds next key %s (up to %s)\n", o.GatewayURL, kid, timeout)
	reps, err := waitReplicas(ctx, hc, o.GatewayURL, timeout, poll, "holding "+kid, holds)
	if err != nil {
		return false, true, "", fmt.Errorf("next key %s not promoted: %w; a replica that cannot re-read the ring logs \"session key ring reload failed\": fix its access to the ring and run the command again", kid, err)
	}
	fmt.Fprintf(o.Progress, "every gateway replica (%d) holds next key %s\n", len(reps), kid)
	return true, true, "", nil
}

// newestNext returns the most recently created next key.
func newestNext(r *session.Ring) (session.Key, bool) {
	var best session.Key
	found := false
	for _, k := range r.Keys() {
		if k.State == session.StateNext && (!found || k.Created.After(best.Created)) {
			best, found = k, true
		}
	}
	return best, found
}
