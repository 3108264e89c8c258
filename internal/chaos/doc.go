// Package chaos is a bounded fault matrix over a local Tailor cluster (internal/cluster):
// while events go in through serve's ingestion API, CRM rows change in Postgres (CDC carries
// them), recipients unsubscribe (one-click, through serve) and a campaign renders, it injects
// faults — SIGKILL of every role at a random point and a restart, a Postgres restart, an
// emulator outage, a content API outage and slowness, pg_terminate_backend of the workers'
// sessions, and a sender that claims and never acks — and then checks invariants against the
// ground truth the harness kept: every event counted exactly once, profiles equal to their
// CRM rows, exactly one message per eligible recipient, nothing claimed for a recipient after
// the unsubscribe, no River job lost or stuck. Every wait has a deadline; the random seed is
// printed and settable. Run it with `tailor dev chaos` (make chaos); a short version runs in
// make test (TestChaos_Short).
//
// It only drives the system through its public surfaces (the CLI, HTTP, Postgres rows, the
// delivery Store's exported API) and must not reach into a component's internals.
package chaos
