// Package httpserver runs Tailor's HTTP server: liveness (/healthz), readiness (/readyz, which
// asks every backend), Prometheus metrics (/metrics), and whatever handlers the command mounts
// (event ingestion, webhooks, the sender API). It owns listening and graceful shutdown only.
//
// It imports no component package: handlers are mounted by the command (internal/app).
package httpserver
