package mcpproxy

import (
	"encoding/json"
	"net/http"
)

// maxLogName bounds client-chosen strings in the access log.
const maxLogName = 128

// mcpMethod returns the JSON-RPC method and the tool, prompt or resource name of a request,
// for the access log: from the Mcp-Method / Mcp-Name headers (2026-07-28), else from the body.
// It never fails: an unparsable body gives empty strings.
func mcpMethod(h http.Header, body []byte) (method, name string) {
	if v := h["Mcp-Method"]; len(v) > 0 && v[0] != "" {
		method = trunc(v[0])
		if n := h["Mcp-Name"]; len(n) > 0 {
			name = trunc(n[0])
		}
		return method, name
	}
	i := 0
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n') {
		i++
	}
	if i == len(body) {
		return "", ""
	}
	if body[i] == '[' {
		return "batch", ""
	}
	var msg struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
			URI  string `json:"uri"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &msg) != nil {
		return "", ""
	}
	name = msg.Params.Name
	if name == "" {
		name = msg.Params.URI
	}
	return trunc(msg.Method), trunc(name)
}

func trunc(s string) string {
	if len(s) > maxLogName {
		return s[:maxLogName]
	}
	return s
}
