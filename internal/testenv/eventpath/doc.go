// Package eventpath gives integration tests the behavioural event path on the local stack: a
// stream, the profiles and lease tables, a producer, dead letters, and consumers that
// aggregate into profiles with the production processor (pipeline/events) and writer
// (pipeline/profile). Tests of pipeline/stream, internal/httpapi and whoever else needs events
// in profiles share it.
//
// Tests only; it imports the pipeline packages, so those packages' internal tests cannot
// use it (their external tests can).
package eventpath
