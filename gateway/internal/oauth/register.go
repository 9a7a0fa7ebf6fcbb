package oauth

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/mcpgate/mcpgate/gateway/internal/clients"
)

// handleRegister serves POST /register (RFC 7591): rate limited per IP, JSON bodies of at most
// clients.MaxRegistrationBody bytes, validation by the registry.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	if !corsPost(w, r) {
		return
	}
	if !s.allow(w, r, "register", s.limits.Register, false) {
		return
	}
	ctx := r.Context()
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.m.event("register", "invalid")
		writeOAuthError(w, http.StatusBadRequest, clients.ErrCodeInvalidClientMetadata, "the body must be application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, clients.MaxRegistrationBody))
	if err != nil {
		s.m.event("register", "invalid")
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeOAuthError(w, http.StatusRequestEntityTooLarge, clients.ErrCodeInvalidClientMetadata, "the registration body is too large")
			return
		}
		writeOAuthError(w, http.StatusBadRequest, clients.ErrCodeInvalidClientMetadata, "the registration body could not be read")
		return
	}
	resp, err := s.clients.Register(ctx, body)
	if err != nil {
		var re *clients.RegistrationError
		if errors.As(err, &re) {
			s.m.event("register", "invalid")
			writeOAuthError(w, http.StatusBadRequest, re.Code, re.Description)
			return
		}
		s.m.event("register", "unavailable")
		s.log.ErrorContext(ctx, "register: registry failed", "err", err)
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the registration could not be stored; retry later")
		return
	}
	s.m.event("register", "ok")
	writeJSON(w, http.StatusCreated, resp)
}
