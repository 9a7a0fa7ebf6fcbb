package mcpproxy

import (
	"net/http"
	"strconv"
)

// JSON-RPC error codes of the gateway's own answers (implementation-defined server errors).
const (
	codeForbidden   = -32001
	codeUnavailable = -32002
	codeRateLimited = -32003
	codeBadGateway  = -32004
	codeTimeout     = -32005
	codeTooLarge    = -32006
)

var (
	bodyNoToken      = []byte(`{"error":"invalid_request","error_description":"A bearer access token is required"}` + "\n")
	bodyInvalidToken = []byte(`{"error":"invalid_token","error_description":"The access token is invalid or expired"}` + "\n")
	retryAfter1      = []string{"1"}
	contentTypeJSON  = []string{"application/json"}
	noStore          = []string{"no-store"}
)

// writeJSON writes a fixed JSON body.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Cache-Control"] = noStore
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeRPCError writes a JSON-RPC error response with id null. message must be a constant
// without characters that need JSON escaping: it never carries backend details.
func writeRPCError(w http.ResponseWriter, status, code int, message string) {
	b := make([]byte, 0, 96+len(message))
	b = append(b, `{"jsonrpc":"2.0","id":null,"error":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":"`...)
	b = append(b, message...)
	b = append(b, "\"}}\n"...)
	writeJSON(w, status, b)
}
