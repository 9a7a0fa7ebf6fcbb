package keyrotation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/gateway/internal/funckey"
)

// Secret is a secret the gateways read: the function key (a Key Vault secret or the one-line
// file the gateway watches) or the session-key ring. secretsrc.KeyVault and secretsrc.File
// satisfy it.
type Secret interface {
	// Get returns the current value; a missing secret or file gives fs.ErrNotExist.
	Get(ctx context.Context) ([]byte, error)
	// Put stores a new value.
	Put(ctx context.Context, value []byte) error
	// Describe names the target (never the value).
	Describe() string
}

// DefaultFamily is the default key family: the gateway's host function keys are named
// "gateway" (the first, created by the local tooling) or "gateway-<UTC timestamp>".
const DefaultFamily = "gateway"

// timestampLayout names rotated keys: gateway-20261127T044500Z.
const timestampLayout = "20060102T150405Z"

// Config is one rotation.
type Config struct {
	// Keys is the function app's host keys (required).
	Keys HostKeys
	// Publish is where the gateways read the key (required).
	Publish Secret
	// Family is the key family (default DefaultFamily). Keys named Family or
	// Family-<timestamp> belong to the gateway; only they are ever deleted.
	Family string
	// GatewayURL is the gateway's base URL: the rotation waits until every replica listed by
	// /readyz?replicas=1 uses the new key before deleting old keys. Empty: old keys are kept.
	GatewayURL string
	// FunctionURL is the function app's base URL, probed with the new key before it is
	// published. Empty (or unreachable, e.g. behind access restrictions): the rotation waits
	// HostCacheWait after the key's creation instead.
	FunctionURL string
	// HTTPClient for the probes (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// Timeout bounds each wait (default 10 min: a gateway reading Key Vault polls every 5).
	Timeout time.Duration
	// Poll is the interval between probes (default 1 s).
	Poll time.Duration
	// HostCacheWait is how long a new key may be refused by a Functions host instance (it
	// reloads its keys at most once a minute after a miss). Default 65 s; negative: none.
	HostCacheWait time.Duration
	// IfMissing: do nothing when a host function key of the app is already published (for the
	// deployment hook); a published value that matches no key of the app is replaced.
	IfMissing bool
	// DryRun: compute and return the plan, change nothing.
	DryRun bool
	// Progress receives one line per step (default: discard). Never a key value.
	Progress io.Writer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Plan is what a rotation will do, computed from the function app's keys and the published
// value (so that a re-run resumes an interrupted rotation).
type Plan struct {
	// App and Target describe the function app and the publishing target.
	App    string `json:"app"`
	Target string `json:"target"`
	// Family lists the gateway's keys on the function app, oldest first.
	Family []string `json:"family"`
	// Current is the name of the key whose value is published ("" if none matches).
	Current string `json:"current,omitempty"`
	// Published reports whether any value is published.
	Published bool `json:"published"`
	// NewKey is the key the gateways will use.
	NewKey string `json:"new_key,omitempty"`
	// Create: NewKey does not exist yet. Publish: NewKey is not published yet.
	Create  bool `json:"create"`
	Publish bool `json:"publish"`
	// Delete are the old keys of the family, deleted once every gateway uses NewKey.
	Delete []string `json:"delete"`
	// Resume explains why an existing key is reused ("" for a fresh rotation).
	Resume string `json:"resume,omitempty"`
	// Skip is why nothing is done (--if-missing with a key of the app published).
	Skip string `json:"skip,omitempty"`
}

// Step is one completed step.
type Step struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"` // done | skipped
	Detail  string  `json:"detail,omitempty"`
	Seconds float64 `json:"seconds"`
}

// Result is the outcome of Rotate.
type Result struct {
	// Action: rotated, resumed, unchanged (--if-missing) or planned (--dry-run).
	Action         string    `json:"action"`
	Plan           Plan      `json:"plan"`
	NewKey         string    `json:"new_key,omitempty"`
	NewFingerprint string    `json:"new_fingerprint,omitempty"`
	Deleted        []string  `json:"deleted"`
	Kept           []string  `json:"kept,omitempty"`
	Replicas       []Replica `json:"replicas,omitempty"`
	Steps          []Step    `json:"steps"`
	Seconds        float64   `json:"seconds"`
}

// StepError is a failed step: what failed, and how to resume or roll back. Nothing has been
// deleted when a step before "delete" fails.
type StepError struct {
	Step string
	Err  error
	Hint string
}

func (e *StepError) Error() string {
	return fmt.Sprintf("step %s failed: %v\n%s", e.Step, e.Err, e.Hint)
}

func (e *StepError) Unwrap() error { return e.Err }

// InFamily reports whether key name belongs to family: the name itself or name-<timestamp>.
func InFamily(family, name string) bool {
	if name == family {
		return true
	}
	_, ok := familyTime(family, name)
	return ok
}

// familyTime parses the creation time in family-<timestamp>[-N].
func familyTime(family, name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, family+"-")
	if !ok || len(rest) < len(timestampLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(timestampLayout, rest[:len(timestampLayout)])
	if err != nil {
		return time.Time{}, false
	}
	if tail := rest[len(timestampLayout):]; tail != "" {
		n, ok := strings.CutPrefix(tail, "-")
		if !ok || n == "" || strings.Trim(n, "0123456789") != "" || len(n) > 3 {
			return time.Time{}, false
		}
	}
	return t, true
}

// ValidFamily checks a --key-name: letters, digits, '-' and '_', not the master key.
func ValidFamily(family string) error {
	if family == "" || len(family) > 64 {
		return errors.New("key name: 1 to 64 characters")
	}
	if strings.EqualFold(family, "master") || strings.EqualFold(family, "_master") {
		return errors.New("key name: the master key is never used by the gateway")
	}
	for _, c := range family {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("key name %q: only letters, digits, '-' and '_'", family)
		}
	}
	return nil
}

// sortFamily orders family keys oldest first: the bare family name, then by timestamp.
func sortFamily(family string, names []string) {
	slices.SortFunc(names, func(a, b string) int {
		ta, _ := familyTime(family, a)
		tb, _ := familyTime(family, b)
		if c := ta.Compare(tb); c != 0 {
			return c
		}
		if len(a) != len(b) {
			return len(a) - len(b) // gateway-T-2 after gateway-T, gateway-T-10 after gateway-T-9
		}
		return strings.Compare(a, b)
	})
}

// publishedValue reads the published key (first line, trimmed).
func publishedValue(ctx context.Context, p Secret) (string, bool, error) {
	b, err := p.Get(ctx)
	if err != nil {
		if isNotExist(err) {
			return "", false, nil
		}
		return "", false, err
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	v := strings.TrimSpace(string(b))
	return v, v != "", nil
}

func (c *Config) defaults() {
	if c.Family == "" {
		c.Family = DefaultFamily
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.HostCacheWait == 0 {
		c.HostCacheWait = 65 * time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// makePlan computes the plan from the keys on the app and the published value.
func makePlan(c *Config, keys map[string]string, pub string, published bool) Plan {
	p := Plan{App: c.Keys.Describe(), Target: c.Publish.Describe(), Published: published, Family: []string{}, Delete: []string{}}
	for name := range keys {
		if InFamily(c.Family, name) {
			p.Family = append(p.Family, name)
		}
	}
	sortFamily(c.Family, p.Family)
	if published {
		// Prefer a family key; a non-family key (say "default") can be published too.
		for _, n := range p.Family {
			if keys[n] == pub {
				p.Current = n
			}
		}
		if p.Current == "" {
			others := make([]string, 0, len(keys))
			for n := range keys {
				others = append(others, n)
			}
			slices.Sort(others)
			for _, n := range others {
				if keys[n] == pub {
					p.Current = n
					break
				}
			}
		}
	}
	if c.IfMissing && p.Current != "" {
		p.Skip = "a function key of the app (" + p.Current + ") is already published in " + p.Target + " (--if-missing)"
		return p
	}
	var newest string
	if n := len(p.Family); n > 0 {
		newest = p.Family[n-1]
	}
	_, newestStamped := familyTime(c.Family, newest)
	switch {
	case newest != "" && p.Current == newest && len(p.Family) > 1:
		p.NewKey, p.Resume = newest, "the newest key is published but older keys remain: an earlier rotation stopped before deleting them"
	case newestStamped && p.Current != newest:
		p.NewKey, p.Publish, p.Resume = newest, true, "the newest key was created but never published: an earlier rotation stopped before publishing it"
	default:
		p.NewKey, p.Create, p.Publish = newKeyName(c.Family, c.Now(), keys), true, true
	}
	for _, n := range p.Family {
		if n != p.NewKey {
			p.Delete = append(p.Delete, n)
		}
	}
	return p
}

// newKeyName returns family-<UTC timestamp>, with -2, -3, … if that name is taken.
func newKeyName(family string, now time.Time, keys map[string]string) string {
	base := family + "-" + now.UTC().Format(timestampLayout)
	name := base
	for i := 2; ; i++ {
		if _, taken := keys[name]; !taken {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// rotation is the running state of Rotate.
type rotation struct {
	c      *Config
	res    *Result
	start  time.Time
	nsteps int
	step   int
}

func (r *rotation) progress(format string, args ...any) {
	fmt.Fprintf(r.c.Progress, format+"\n", args...)
}

// begin announces step name and returns a function recording it.
func (r *rotation) begin(name, what string) func(status, detail string) {
	r.step++
	r.progress("[%d/%d] %s: %s", r.step, r.nsteps, name, what)
	t0 := time.Now()
	return func(status, detail string) {
		d := time.Since(t0)
		r.res.Steps = append(r.res.Steps, Step{Name: name, Status: status, Detail: detail, Seconds: d.Seconds()})
		if detail != "" {
			r.progress("      %s (%s): %s", status, d.Round(100*time.Millisecond), detail)
		} else {
			r.progress("      %s (%s)", status, d.Round(100*time.Millisecond))
		}
	}
}

// Rotate runs the rotation: inspect, create the new key, wait until the function app accepts
// it, publish it, wait until every gateway replica uses it, delete the old keys of the family.
// A failure returns a *StepError (nothing deleted before the last step) and a re-run resumes.
func Rotate(ctx context.Context, c Config) (*Result, error) {
	if c.Keys == nil || c.Publish == nil {
		return nil, errors.New("key rotation: no function app or no publishing target")
	}
	c.defaults()
	if err := ValidFamily(c.Family); err != nil {
		return nil, err
	}
	r := &rotation{c: &c, res: &Result{Deleted: []string{}, Steps: []Step{}}, start: time.Now(), nsteps: 6}
	defer func() { r.res.Seconds = time.Since(r.start).Seconds() }()

	done := r.begin("inspect", "read the keys of "+c.Keys.Describe()+" and the published key in "+c.Publish.Describe())
	keys, err := c.Keys.List(ctx)
	if err != nil {
		return r.res, &StepError{Step: "inspect", Err: err, Hint: "Nothing was changed. Re-run the same command once the problem is fixed."}
	}
	pub, published, err := publishedValue(ctx, c.Publish)
	if err != nil {
		return r.res, &StepError{Step: "inspect", Err: err, Hint: "Nothing was changed. Re-run the same command once the problem is fixed."}
	}
	plan := makePlan(&c, keys, pub, published)
	r.res.Plan = plan
	done("done", describePlan(plan))
	switch {
	case plan.Skip != "":
		r.res.Action = "unchanged"
		r.progress("nothing to do: %s", plan.Skip)
		return r.res, nil
	case c.DryRun:
		r.res.Action = "planned"
		r.progress("dry run: nothing changed")
		return r.res, nil
	}
	r.res.Action = "rotated"
	if plan.Resume != "" {
		r.res.Action = "resumed"
		r.progress("resuming: %s", plan.Resume)
	}
	r.res.NewKey = plan.NewKey
	name := plan.NewKey

	// 2. Create.
	created := c.Now()
	if t, ok := familyTime(c.Family, name); ok && !plan.Create {
		created = t
	}
	if plan.Create {
		done = r.begin("create", "create host function key "+name+" on "+c.Keys.Describe()+" (value generated by the function app)")
		if err := c.Keys.Create(ctx, name); err != nil {
			return r.res, &StepError{Step: "create", Err: err, Hint: "Nothing was published or deleted. Re-run the same command; if " + name +
				" was created anyway, the re-run publishes it. To undo: " + c.Keys.DeleteCommand(name)}
		}
		if keys, err = c.Keys.List(ctx); err != nil {
			return r.res, &StepError{Step: "create", Err: err, Hint: "The key " + name + " was created but could not be read back; nothing was published or deleted. Re-run the same command to resume."}
		}
		done("done", "")
	} else {
		done = r.begin("create", "reuse host function key "+name)
		done("skipped", "the key exists")
	}
	value := keys[name]
	if value == "" {
		return r.res, &StepError{Step: "create", Err: fmt.Errorf("%s does not list key %s after creating it", c.Keys.Describe(), name),
			Hint: "Nothing was published or deleted. Re-run the same command."}
	}
	fp := funckey.Fingerprint(value)
	r.res.NewFingerprint = fp
	unpublished := "The new key " + name + " exists but is not published; nothing was deleted and the gateways still use the old key. " +
		"Re-run the same command to resume with it, or remove it: " + c.Keys.DeleteCommand(name)

	// 3. Function app accepts it.
	if plan.Publish {
		done = r.begin("accept", "wait until the function app accepts "+name+" (fingerprint "+fp+")")
		detail, err := r.waitAccepted(ctx, value, created)
		if err != nil {
			return r.res, &StepError{Step: "accept", Err: err, Hint: unpublished}
		}
		done("done", detail)
	} else {
		done = r.begin("accept", "function app accepts "+name)
		done("skipped", "already published")
	}

	// 4. Publish.
	if plan.Publish {
		done = r.begin("publish", "write "+name+" to "+c.Publish.Describe())
		if err := c.Publish.Put(ctx, []byte(value)); err != nil {
			return r.res, &StepError{Step: "publish", Err: err, Hint: unpublished}
		}
		done("done", "")
	} else {
		done = r.begin("publish", "write "+name+" to "+c.Publish.Describe())
		done("skipped", "already published")
	}

	// 5. Gateways use it.
	toDelete := plan.Delete
	switch {
	case len(toDelete) == 0:
		done = r.begin("gateways", "wait until every gateway replica uses "+fp)
		done("skipped", "no old key to delete (the gateways load the new key within their poll interval)")
	case c.GatewayURL == "":
		done = r.begin("gateways", "wait until every gateway replica uses "+fp)
		done("skipped", "no gateway URL: cannot see which key the gateways use, so the old keys are kept")
		r.res.Kept = toDelete
		toDelete = nil
	default:
		done = r.begin("gateways", "wait until every replica of "+c.GatewayURL+" uses "+fp)
		reps, err := r.waitGateways(ctx, fp)
		r.res.Replicas = reps
		if err != nil {
			old := plan.Current
			rollback := ""
			if old != "" {
				rollback = " To roll back instead, publish the old key again: its value is printed by `" + c.Keys.ValueCommand(old) + "`."
			}
			return r.res, &StepError{Step: "gateways", Err: err, Hint: "The new key " + name + " is published and works; nothing was deleted, so both keys still work. " +
				"Re-run the same command to keep waiting and then delete the old keys." + rollback}
		}
		done("done", fmt.Sprintf("%d replica(s) use %s", len(reps), fp))
	}

	// 6. Delete.
	if len(toDelete) == 0 {
		done = r.begin("delete", "delete the old keys of family "+c.Family)
		done("skipped", "nothing to delete")
		return r.res, nil
	}
	done = r.begin("delete", "delete "+strings.Join(toDelete, ", ")+" from "+c.Keys.Describe())
	for _, old := range toDelete {
		if err := c.Keys.Delete(ctx, old); err != nil {
			return r.res, &StepError{Step: "delete", Err: err, Hint: "Every gateway uses " + name + "; the rotation is complete except for deleting " +
				strings.Join(slices.DeleteFunc(slices.Clone(toDelete), func(n string) bool { return slices.Contains(r.res.Deleted, n) }), ", ") +
				". Re-run the same command to delete them, or: " + c.Keys.DeleteCommand(old)}
		}
		r.res.Deleted = append(r.res.Deleted, old)
	}
	done("done", "")
	return r.res, nil
}

func describePlan(p Plan) string {
	cur := p.Current
	if cur == "" {
		cur = "none"
		if p.Published {
			cur = "a value that matches no key of the app"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "published key: %s; gateway keys: %s; ", cur, strings.Join(p.Family, ", "))
	switch {
	case p.Skip != "":
		b.WriteString("nothing to do")
	case p.Create:
		fmt.Fprintf(&b, "plan: create %s, publish it", p.NewKey)
	case p.Publish:
		fmt.Fprintf(&b, "plan: publish existing %s", p.NewKey)
	default:
		fmt.Fprintf(&b, "plan: keep %s", p.NewKey)
	}
	if len(p.Delete) > 0 {
		fmt.Fprintf(&b, ", then delete %s", strings.Join(p.Delete, ", "))
	}
	return b.String()
}

// waitAccepted waits until the function app accepts the key: by probing FunctionURL, or (no
// URL, or the app is behind access restrictions) until HostCacheWait has passed since created.
func (r *rotation) waitAccepted(ctx context.Context, key string, created time.Time) (string, error) {
	c := r.c
	cacheWait := func(why string) (string, error) {
		if c.HostCacheWait < 0 {
			return why + "; not waiting (host cache wait disabled)", nil
		}
		left := c.HostCacheWait - c.Now().Sub(created)
		if left > 0 {
			r.progress("      %s: waiting %s for every Functions host instance to reload its keys", why, left.Round(time.Second))
			if err := sleep(ctx, left); err != nil {
				return "", err
			}
		}
		return why + fmt.Sprintf("; waited until %s after the key's creation", c.HostCacheWait), nil
	}
	if c.FunctionURL == "" {
		return cacheWait("no function app URL to probe")
	}
	var last error
	n := 0
	err := pollUntil(ctx, c.Timeout, c.Poll, func(ctx context.Context) (bool, error) {
		n++
		acc, err := ProbeFunctionApp(ctx, c.HTTPClient, c.FunctionURL, key)
		switch {
		case acc == Accepted:
			return true, nil
		case errors.Is(err, errForbidden):
			return false, err // access restrictions: stop probing, fall back below
		default:
			last = err
			if err == nil {
				last = errors.New("the function app answers 401 to the new key")
			}
			return false, nil
		}
	})
	switch {
	case err == nil:
		return fmt.Sprintf("%s accepts the key (%d probe(s))", c.FunctionURL, n), nil
	case errors.Is(err, errTimeout):
		return "", fmt.Errorf("%w: %v", err, last)
	case errors.Is(err, errForbidden):
		return cacheWait(err.Error())
	default:
		return "", err
	}
}

// waitGateways waits until at least one replica is listed and every listed replica reports
// fingerprint fp.
func (r *rotation) waitGateways(ctx context.Context, fp string) ([]Replica, error) {
	return waitReplicas(ctx, r.c.HTTPClient, r.c.GatewayURL, r.c.Timeout, r.c.Poll, "on "+fp, func(rep Replica) (string, bool) {
		if rep.KeyFingerprint == fp {
			return "", true
		}
		if rep.KeyFingerprint == "" {
			return "no key", false
		}
		return rep.KeyFingerprint, false
	})
}

// waitReplicas polls the gateway's replica registry until at least one replica is listed and
// every listed one is current (current returns false and what the replica has instead), or
// timeout passes; the error then names the replicas behind. what completes "replicas not yet
// …" in that error.
func waitReplicas(ctx context.Context, hc *http.Client, gatewayURL string, timeout, poll time.Duration, what string, current func(Replica) (string, bool)) ([]Replica, error) {
	var reps []Replica
	var behind, probeErr error // what the latest answer said; the latest probe's failure
	err := pollUntil(ctx, timeout, poll, func(ctx context.Context) (bool, error) {
		r, err := GatewayReplicas(ctx, hc, gatewayURL)
		if err != nil {
			probeErr = err
			return false, nil
		}
		reps, probeErr = r, nil
		if b := replicasBehind(reps, current); len(b) > 0 {
			behind = fmt.Errorf("replicas not yet %s: %s", what, strings.Join(b, ", "))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		// The replicas behind matter most; a probe that failed at the end comes second.
		for _, e := range []error{behind, probeErr} {
			if e != nil {
				err = fmt.Errorf("%w: %v", err, e)
			}
		}
		return reps, err
	}
	return reps, nil
}

// replicasBehind describes the replicas that current rejects: "id (what it has)".
func replicasBehind(reps []Replica, current func(Replica) (string, bool)) []string {
	var behind []string
	for _, rep := range reps {
		if has, ok := current(rep); !ok {
			behind = append(behind, rep.ID+" ("+has+")")
		}
	}
	return behind
}

// errTimeout is a wait that ran out of time.
var errTimeout = errors.New("timed out")

// pollUntil calls fn every interval until it returns true, an error, or timeout passes.
func pollUntil(ctx context.Context, timeout, interval time.Duration, fn func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
	defer cancel()
	for {
		ok, err := fn(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if err := sleep(ctx, interval); err != nil {
			if errors.Is(context.Cause(ctx), errTimeout) {
				return fmt.Errorf("%w after %s", errTimeout, timeout)
			}
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
