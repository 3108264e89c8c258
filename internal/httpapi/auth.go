package httpapi

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Scopes an API key may grant. Each endpoint requires one.
const (
	ScopeEvents   = "events"   // POST /v1/events
	ScopeSend     = "send"     // the sender API
	ScopeWebhooks = "webhooks" // inbound webhooks that use API keys
	ScopeAdmin    = "admin"    // operator endpoints
)

// Errors of KeyChecker.Check.
var (
	ErrUnknownKey   = errors.New("missing, unknown or revoked API key")
	ErrMissingScope = errors.New("the API key lacks the scope this endpoint needs")
)

// KeyChecker decides whether an API key may call an endpoint that needs scope: nil, an error
// wrapping ErrUnknownKey (401) or ErrMissingScope (403), or another error (the check itself
// failed: 503).
type KeyChecker interface {
	Check(ctx context.Context, key, scope string) error
}

// HashKey returns the hex SHA-256 of an API key: what the server stores and compares, so it
// never holds the key itself.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// StaticKeys accepts the keys whose HashKey values it was made from, for every scope (the
// bootstrap keys of tailor serve --api-key-hash). Comparisons take constant time.
type StaticKeys struct{ hashes [][]byte }

var _ KeyChecker = (*StaticKeys)(nil)

// NewStaticKeys parses hex SHA-256 hashes.
func NewStaticKeys(hashes []string) (*StaticKeys, error) {
	s := &StaticKeys{}
	for _, h := range hashes {
		b, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("API key hash %q is not a hex SHA-256", h)
		}
		s.hashes = append(s.hashes, b)
	}
	return s, nil
}

// Check implements KeyChecker.
func (s *StaticKeys) Check(_ context.Context, key, _ string) error {
	if key == "" {
		return ErrUnknownKey
	}
	sum := sha256.Sum256([]byte(key))
	ok := 0
	for _, h := range s.hashes {
		ok |= subtle.ConstantTimeCompare(sum[:], h)
	}
	if ok != 1 {
		return ErrUnknownKey
	}
	return nil
}

// RequestKey returns the API key of a request: Authorization: Bearer KEY, X-API-Key, or the
// password of HTTP Basic authentication (what a browser sends for the operator UI).
func RequestKey(r *http.Request) string {
	if k := strings.TrimSpace(r.Header.Get("X-API-Key")); k != "" {
		return k
	}
	auth := r.Header.Get("Authorization")
	if len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:])
	}
	if _, pass, ok := r.BasicAuth(); ok {
		return strings.TrimSpace(pass)
	}
	return ""
}

// RequireScope wraps h so that only requests with an API key granting scope reach it: 401 for
// a missing, unknown or revoked key, 403 for a key without the scope, 503 when the check
// fails. Answers are JSON {"error": reason}.
func RequireScope(kc KeyChecker, scope string, h http.Handler) http.Handler {
	return requireScope(kc, scope, `Bearer realm="tailor"`, h)
}

// RequireScopeBrowser is RequireScope for pages people open in a browser: a 401 asks for HTTP
// Basic authentication, so the browser prompts and the API key goes in as the password (any
// user name).
func RequireScopeBrowser(kc KeyChecker, scope string, h http.Handler) http.Handler {
	return requireScope(kc, scope, `Basic realm="tailor (API key as password)", charset="UTF-8"`, h)
}

func requireScope(kc KeyChecker, scope, challenge string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := kc.Check(r.Context(), RequestKey(r), scope)
		switch {
		case err == nil:
			h.ServeHTTP(w, r)
		case errors.Is(err, ErrUnknownKey):
			w.Header().Set("WWW-Authenticate", challenge)
			WriteError(w, http.StatusUnauthorized, ErrUnknownKey.Error()+" (send Authorization: Bearer KEY)")
		case errors.Is(err, ErrMissingScope):
			WriteError(w, http.StatusForbidden, fmt.Sprintf("this API key lacks the %q scope", scope))
		default:
			WriteError(w, http.StatusServiceUnavailable, "the API key could not be checked, retry later")
		}
	})
}

// AnyOf returns a KeyChecker that accepts a key any of checkers accepts for the scope, asking
// them in order and stopping at the first that accepts (put checkers that need no I/O, such as
// StaticKeys, first, so they keep working when a store is down). Otherwise it returns the
// first ErrMissingScope (a known key without the scope: 403), else the first other error (the
// check failed: 503), else ErrUnknownKey.
func AnyOf(checkers ...KeyChecker) KeyChecker { return anyOf(checkers) }

type anyOf []KeyChecker

func (a anyOf) Check(ctx context.Context, key, scope string) error {
	var missing, failed error
	for _, kc := range a {
		err := kc.Check(ctx, key, scope)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrUnknownKey):
		case errors.Is(err, ErrMissingScope):
			missing = cmp.Or(missing, err)
		default:
			failed = cmp.Or(failed, err)
		}
	}
	return cmp.Or(missing, failed, ErrUnknownKey)
}
