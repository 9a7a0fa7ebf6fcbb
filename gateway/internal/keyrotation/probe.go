package keyrotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Replica is one gateway replica as GET /readyz?replicas=1 lists it.
type Replica struct {
	ID             string    `json:"id"`
	KeyFingerprint string    `json:"key_fingerprint"`
	Time           time.Time `json:"time"`
	Ready          bool      `json:"ready"`
	// RingKeyIDs are the session-key ids the replica holds (absent from gateways older than
	// this field).
	RingKeyIDs []string `json:"ring_key_ids"`
}

// maxProbeBody bounds what is read of a probe response.
const maxProbeBody = 1 << 20

// GatewayReplicas reads the replica registry of the gateway at baseURL: GET
// {baseURL}/readyz?replicas=1, whose body lists every live replica's function-key fingerprint
// (answered with 200 or 503: a replica that is not ready still lists the registry).
func GatewayReplicas(ctx context.Context, hc *http.Client, baseURL string) ([]Replica, error) {
	u, err := url.JoinPath(baseURL, "readyz")
	if err != nil {
		return nil, fmt.Errorf("gateway URL %q: %w", baseURL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"?replicas=1", nil)
	if err != nil {
		return nil, fmt.Errorf("gateway URL %q: %w", baseURL, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil {
		return nil, fmt.Errorf("gateway %s: read /readyz: %w", baseURL, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, fmt.Errorf("gateway %s: /readyz answered %d", baseURL, resp.StatusCode)
	}
	return parseReplicas(body, baseURL)
}

// parseReplicas parses a /readyz?replicas=1 body; an empty registry is an error.
func parseReplicas(body []byte, baseURL string) ([]Replica, error) {
	var doc struct {
		Replicas []Replica `json:"replicas"`
		Reasons  []string  `json:"reasons"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("gateway %s: /readyz is not the gateway's JSON", baseURL)
	}
	if len(doc.Replicas) == 0 {
		reason := "no replica is registered"
		if len(doc.Reasons) > 0 {
			reason += " (" + strings.Join(doc.Reasons, "; ") + ")"
		}
		return nil, fmt.Errorf("gateway %s: %s", baseURL, reason)
	}
	return doc.Replicas, nil
}

// Acceptance is what a probe of the function app with a key found.
type Acceptance int

// Probe outcomes.
const (
	// Refused: the function app answered 401 (the key is unknown, or the host has not
	// reloaded its keys yet).
	Refused Acceptance = iota
	// Accepted: any answer past the key check (not 401, not 403).
	Accepted
	// Unreachable: 403 (access restrictions admit only the gateways) or no answer: the probe
	// cannot tell.
	Unreachable
)

// errForbidden marks a 403 from the function app (access restrictions).
var errForbidden = errors.New("403 forbidden (access restrictions admit only the gateways?)")

// ProbePath is what ProbeFunctionApp requests: the MCP route, which the Functions host
// serves through the catch-all function with authLevel function (so the key is checked), and
// the standalone function app behind the same check. The root is avoided: the host may answer
// it with its anonymous home page.
const ProbePath = "/mcp"

// ProbeFunctionApp sends GET {baseURL}/mcp with x-functions-key: key to the function app and
// classifies the answer: 401 means refused; 404 and 5xx (which may come from in front of the
// key check) mean "not yet"; any other answer means the key passed the check (the MCP handler
// answers a bare GET with a 4xx of its own, never 401).
func ProbeFunctionApp(ctx context.Context, hc *http.Client, baseURL, key string) (Acceptance, error) {
	u, err := url.JoinPath(baseURL, ProbePath)
	if err != nil {
		return Unreachable, fmt.Errorf("function app URL %q: %w", baseURL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Unreachable, fmt.Errorf("function app URL %q: %w", baseURL, err)
	}
	req.Header.Set("x-functions-key", key)
	resp, err := hc.Do(req)
	if err != nil {
		return Unreachable, fmt.Errorf("function app %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	switch st := resp.StatusCode; {
	case st == http.StatusUnauthorized:
		return Refused, nil
	case st == http.StatusForbidden:
		return Unreachable, fmt.Errorf("function app %s: %w", baseURL, errForbidden)
	case st == http.StatusNotFound || st >= 500:
		// Answers that can come from in front of the key check (a stopped or starting app, a
		// wrong URL): no conclusion, probe again.
		return Refused, fmt.Errorf("function app %s: %s answered %d", baseURL, ProbePath, st)
	default:
		return Accepted, nil
	}
}
