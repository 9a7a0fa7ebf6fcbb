package grants_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/gateway/internal/grants"
	"github.com/mcpgate/mcpgate/gateway/internal/identity"
	"github.com/mcpgate/mcpgate/gateway/internal/store"
)

func TestListAll(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		m := start(t, st, newKeeper(t), grants.Options{})
		a := issue(t, m, mcpRes)
		b, err := m.Issue(ctx, grants.Grant{ClientID: "client-2", User: identity.User{Subject: "bob"}, Resource: mcpRes}, identity.Tokens{})
		if err != nil {
			t.Fatal(err)
		}
		all, err := m.ListAll(ctx)
		if err != nil || len(all) != 2 || all[0].ID != a.GrantID || all[1].ID != b.GrantID {
			t.Fatalf("ListAll = %+v, %v", all, err)
		}
		// Refresh keeps the grant listed once; revocation removes it.
		if _, _, err := m.Refresh(ctx, a.RefreshToken, client, nil); err != nil {
			t.Fatal(err)
		}
		if err := m.Revoke(ctx, b.GrantID); err != nil {
			t.Fatal(err)
		}
		all, err = m.ListAll(ctx)
		if err != nil || len(all) != 1 || all[0].ID != a.GrantID || all[0].RefreshGen != 1 {
			t.Fatalf("after refresh and revoke: %+v, %v", all, err)
		}
		if n, err := m.RevokeClient(ctx, client); err != nil || n != 1 {
			t.Fatalf("RevokeClient = %d, %v", n, err)
		}
		if all, err := m.ListAll(ctx); err != nil || len(all) != 0 {
			t.Fatalf("after RevokeClient: %+v, %v", all, err)
		}
	})
}
