package mcpproxy

import "encoding/json"

// maxLogName bounds client-chosen strings in the access log.
const maxLogName = 128

// mcpMethod returns the JSON-RPC method and the tool, prompt or resource name of a request
// body, for the access log. The body is what the backend acts on, so it is the only source:
// the Mcp-Method / Mcp-Name headers (2026-07-28) are the client's own claim, checked by the
// server only from that protocol version on, and a log must not record a harmless tools/list
// for a body that calls a tool. It never fails: an unparsable body gives empty strings. The
// scan is a small single-pass reader of the top-level "method" and of "params"."name" /
// "params"."uri" (encoding/json's reflection cost ~10 µs per call on the hot path);
// FuzzMCPMethod checks it against encoding/json.
func mcpMethod(body []byte) (method, name string) {
	s := scanner{b: body}
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '[' {
		return "batch", ""
	}
	var uri string
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "method":
			v, ok := s.stringValue()
			method = v
			return ok
		case "params":
			// A repeated "params" replaces the earlier one whole, as the go-sdk's
			// json.RawMessage field does; its fields are not merged.
			name, uri = "", ""
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == '{' {
				return s.object(func(k []byte) bool {
					switch string(k) {
					case "name":
						v, ok := s.stringValue()
						name = v
						return ok
					case "uri":
						v, ok := s.stringValue()
						uri = v
						return ok
					}
					return s.skip(0)
				})
			}
			return s.skip(0)
		}
		return s.skip(0)
	})
	s.ws()
	if !ok || s.i != len(s.b) {
		return "", ""
	}
	if name == "" {
		name = uri
	}
	return trunc(method), trunc(name)
}

func trunc(s string) string {
	if len(s) > maxLogName {
		return s[:maxLogName]
	}
	return s
}

// scanner is a minimal JSON reader over b (RFC 8259 syntax; keys match exactly, as in the
// go-sdk's decoder; duplicate keys: the last wins).
type scanner struct {
	b []byte
	i int
}

const maxDepth = 64

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// object reads {"k": v, …}, calling field for each key with the scanner positioned at the
// value; field must consume the value.
func (s *scanner) object(field func(key []byte) bool) bool {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		start := s.i
		if !s.skipString() {
			return false
		}
		key := s.b[start+1 : s.i-1]
		if hasEscape(key) {
			k, err := unquoteJSON(s.b[start:s.i])
			if err != nil {
				return false
			}
			key = []byte(k)
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		if !field(key) {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func hasEscape(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// stringValue reads a value; it returns the string when the value is a string, "" otherwise
// (encoding/json would reject a non-string for a string field: the caller then logs nothing).
func (s *scanner) stringValue() (string, bool) {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '"' {
		start := s.i
		if !s.skipString() {
			return "", false
		}
		raw := s.b[start:s.i]
		if !hasEscape(raw[1 : len(raw)-1]) {
			return string(raw[1 : len(raw)-1]), true
		}
		v, err := unquoteJSON(raw)
		return v, err == nil
	}
	if s.i+4 <= len(s.b) && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return "", true
	}
	// A non-string: skip it; encoding/json would fail the whole decode.
	return "", s.skip(0) && false
}

// unquoteJSON decodes a JSON string literal with escapes (rare: the slow path).
func unquoteJSON(raw []byte) (string, error) {
	var v string
	err := json.Unmarshal(raw, &v)
	return v, err
}

// skipString moves past a string literal starting at s.i, validating escapes loosely and
// refusing control characters.
func (s *scanner) skipString() bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return true
		case c == '\\':
			j++
			if j >= len(s.b) {
				return false
			}
		case c < 0x20:
			return false
		}
	}
	return false
}

// skip moves past any JSON value.
func (s *scanner) skip(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.skipString()
	case c == '{':
		return s.object(func([]byte) bool { return s.skip(depth + 1) })
	case c == '[':
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			s.ws()
			if s.i >= len(s.b) {
				return false
			}
			if s.b[s.i] == ']' {
				s.i++
				return true
			}
			if s.b[s.i] != ',' {
				return false
			}
			s.i++
		}
	default:
		// Literals and numbers: consume their characters.
		start := s.i
		for s.i < len(s.b) {
			c := s.b[s.i]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				break
			}
			s.i++
		}
		return s.i > start
	}
}
