// Package pipeline moves customer data into profiles: the behavioural event schema and its
// validation, the Kinesis producer and consumer (shard leases, checkpoints), profile aggregation,
// Postgres change data capture (pglogrepl, pgoutput) and the DynamoDB profile store.
//
// It must not render templates or schedule campaigns (templates, jobs), and it never writes
// Postgres tables other than dead_letters: Postgres is the system of record it reads from.
package pipeline
