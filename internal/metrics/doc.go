// Package metrics holds what Tailor's packages share about Prometheus registration.
//
// It imports nothing of Tailor.
package metrics
