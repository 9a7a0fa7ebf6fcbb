package oauth

import (
	"net/http"
)

// asMetadata is the RFC 8414 authorization-server metadata document.
type asMetadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RegistrationEndpoint                       string   `json:"registration_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
	ServiceDocumentation                       string   `json:"service_documentation,omitempty"`
}

// prMetadata is the RFC 9728 protected-resource metadata document.
type prMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

var authMethods = []string{"none", "client_secret_basic", "client_secret_post"}

func (s *Server) asMetadata() asMetadata {
	return asMetadata{
		Issuer:                                     s.issuer,
		AuthorizationEndpoint:                      s.issuer + "/authorize",
		TokenEndpoint:                              s.issuer + "/token",
		RegistrationEndpoint:                       s.issuer + "/register",
		RevocationEndpoint:                         s.issuer + "/revoke",
		ScopesSupported:                            []string{ScopeTools, ScopeOffline},
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token"},
		TokenEndpointAuthMethodsSupported:          authMethods,
		RevocationEndpointAuthMethodsSupported:     authMethods,
		CodeChallengeMethodsSupported:              []string{"S256"},
		AuthorizationResponseIssParameterSupported: true,
		ClientIDMetadataDocumentSupported:          s.cimdSupported(),
	}
}

// cimdSupported asks the registry whether it resolves Client ID Metadata Documents (a
// registry that cannot say is assumed to).
func (s *Server) cimdSupported() bool {
	if c, ok := s.clients.(interface{ MetadataDocumentsSupported() bool }); ok {
		return c.MetadataDocumentsSupported()
	}
	return true
}

// handleASMetadata serves /.well-known/oauth-authorization-server.
func (s *Server) handleASMetadata(w http.ResponseWriter, r *http.Request) {
	if !s.metadataPreamble(w, r) {
		return
	}
	writeMetadata(w, s.asMetadata())
}

// handlePRM serves one protected-resource metadata document; resource comes from the
// configured public URL, never from the request.
func (s *Server) handlePRM(resource string) http.HandlerFunc {
	doc := prMetadata{
		Resource:               resource,
		AuthorizationServers:   []string{s.issuer},
		ScopesSupported:        []string{ScopeTools},
		BearerMethodsSupported: []string{"header"},
		ResourceName:           s.serverName,
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.metadataPreamble(w, r) {
			return
		}
		writeMetadata(w, doc)
	}
}

// handleWellKnownUnknown answers every other /.well-known/ path, including
// /.well-known/openid-configuration (we issue no ID tokens, so we are no OpenID provider),
// with a JSON 404.
func (s *Server) handleWellKnownUnknown(w http.ResponseWriter, r *http.Request) {
	cors(w, "GET, OPTIONS")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeOAuthError(w, http.StatusNotFound, "not_found", "no such metadata document")
}

// metadataPreamble handles CORS and methods for the metadata documents.
func (s *Server) metadataPreamble(w http.ResponseWriter, r *http.Request) bool {
	cors(w, "GET, OPTIONS")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		return false
	default:
		methodNotAllowed(w, "GET, OPTIONS")
		return false
	}
}

// writeMetadata writes a public, cacheable JSON document.
func writeMetadata(w http.ResponseWriter, v any) {
	writeJSONCache(w, http.StatusOK, v, "public, max-age=300")
}
