// Package httpapi is Tailor's HTTP layer: API-key authentication and scopes, JSON answers, and
// the handlers that map the domain packages' results and errors onto status codes (POST
// /v1/events over pipeline/events). Domain packages return typed errors and never see HTTP
// status codes; this package is where they are translated.
//
// It owns no listening or shutdown (internal/httpserver) and no business rules: a handler
// decodes the request, calls a domain package and encodes its answer.
package httpapi
