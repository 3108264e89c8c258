// Package metrics holds what Tailor's packages share about Prometheus: registration that
// tolerates a component registering twice (Register), the description of every metric for the
// README's table and the monitoring files' tests (Reference, Table), and the naming rules every
// metric follows (CheckName: the tailor_ prefix, base units, _total on counters only).
//
// It imports nothing of Tailor.
package metrics
