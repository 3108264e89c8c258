// Package opsstatus reads the operator's one-screen view of a Tailor deployment (tailor status):
// whether Postgres, Kinesis and DynamoDB answer; each Kinesis shard's lease owner, checkpoint
// and iterator age (from the lease table, where consumers report their lag at each renewal);
// the CDC slot's lag and retained WAL; River's unfinished jobs per queue and kind with the
// oldest one's age; campaigns in flight with their progress; dead letters by source; content
// source breaker states (scraped from the workers' /metrics: breakers live in each process);
// and the senders' backlog of rendered messages (ready, leased, expired leases).
//
// Every section is read on its own with a deadline: a component that is down marks its
// section down with the error and the others are still read (Report.Down lists them). The
// same Postgres reads are exported as Prometheus gauges by Collector.
//
// It only reads. It must not write to any backend.
package opsstatus
