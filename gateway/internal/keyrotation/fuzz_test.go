package keyrotation

import (
	"testing"
)

// FuzzParseHostSecrets: host.json is read from disk (written by the function app or by hand):
// any input gives a document or an error, never a panic, and errors never quote a value.
func FuzzParseHostSecrets(f *testing.F) {
	f.Add([]byte(`{"masterKey":{"name":"master","value":"m","encrypted":false},"functionKeys":[{"name":"gateway","value":"v","encrypted":false}],"systemKeys":[]}`))
	f.Add([]byte(`{"functionKeys":null}`))
	f.Add([]byte(`{"functionKeys":[{"name":"a","value":"x","encrypted":true}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, keys, err := parseHostSecrets(data, "host.json")
		if err != nil {
			return
		}
		if doc == nil {
			t.Fatal("nil document without error")
		}
		for _, k := range keys {
			if k.Name == "" || k.Encrypted {
				t.Fatalf("accepted key %q encrypted=%v", k.Name, k.Encrypted)
			}
		}
	})
}

// FuzzParseReplicas: the gateway's /readyz body comes from the network.
func FuzzParseReplicas(f *testing.F) {
	f.Add([]byte(`{"ready":true,"replicas":[{"id":"a","key_fingerprint":"0123abcd","time":"2026-11-27T00:00:00Z","ready":true}]}`))
	f.Add([]byte(`{"ready":false,"reasons":["no function key loaded"]}`))
	f.Add([]byte(`{"replicas":[{"time":"x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		reps, err := parseReplicas(data, "gw")
		if err == nil && len(reps) == 0 {
			t.Fatal("no replicas without error")
		}
	})
}
