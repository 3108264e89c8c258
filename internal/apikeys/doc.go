// Package apikeys owns the API keys of Tailor's HTTP API in Postgres (table api_keys, migration
// 007): creating a key (shown once, stored as its SHA-256), listing and revoking keys, and the
// Checker that tailor serve uses to authenticate requests and check their scopes
// (httpapi.KeyChecker). A revocation takes effect within CheckerConfig.MaxAge (2 s by default).
//
// It imports internal/httpapi for the scope names and the errors a KeyChecker returns, and
// nothing else of Tailor but internal/sqlfile. It knows nothing of HTTP requests: reading the
// key from a request and mapping errors to 401/403 stay in internal/httpapi.
package apikeys
