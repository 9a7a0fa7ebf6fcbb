package e2e

import (
	"testing"

	"github.com/mcpgate/mcpgate/e2e/harness"
)

// TestClientsBlob runs gateway/internal/clients' blob backend tests against a real Azurite
// (the e2e module starts it; the package is internal, so its own tests do the work).
func TestClientsBlob(t *testing.T) {
	az := harness.StartAzurite(t)
	runGatewayTests(t, "./internal/clients", "^TestBlobBackendAzurite$",
		"MCPGATE_TEST_AZURITE_CONNECTION_STRING="+az.ConnectionString)
}
