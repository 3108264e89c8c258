// Package testenv gives integration tests real backends in one call: a local stack per test
// binary (or the shared one `make test` starts, named by TAILOR_TEST_DIR), and for each test a
// fresh, migrated Postgres database and a fresh resource prefix for DynamoDB tables, the Kinesis
// stream and the replication slot, so tests run in parallel without sharing state.
//
// It is for tests only and imports no component package (so every component's tests can use
// it); helpers that need components live in subpackages (eventpath).
package testenv
