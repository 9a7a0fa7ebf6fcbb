package grants

import (
	"bytes"
	"testing"
)

// FuzzPayloads: the token payload decoders never panic, and what they accept re-encodes to
// the same bytes.
func FuzzPayloads(f *testing.F) {
	dk := bytes.Repeat([]byte{7}, 32)
	f.Add(accessClaims{grantID: []byte("g"), dataKey: dk, resource: []byte("http://127.0.0.1:8000/mcp"), scope: []byte("mcp:tools"), clientID: []byte("c")}.marshal())
	f.Add(refreshClaims{grantID: []byte("g"), dataKey: dk, clientID: []byte("c"), secret: bytes.Repeat([]byte{1}, 16), gen: 3}.marshal())
	f.Add([]byte{})
	f.Add([]byte{'A', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := parseAccess(b); err == nil && !bytes.Equal(c.marshal(), b) {
			t.Fatal("access payload does not round-trip")
		}
		if c, err := parseRefresh(b); err == nil && !bytes.Equal(c.marshal(), b) {
			t.Fatal("refresh payload does not round-trip")
		}
	})
}
