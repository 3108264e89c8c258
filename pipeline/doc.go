// Package pipeline is the home of the stages that move customer data into profiles, one
// package each:
//
//   - pipeline/events: the behavioural event contract, ingestion and the stream processor
//   - pipeline/stream: the Kinesis producer and the lease-based consumer
//   - pipeline/profile: the typed customer profile, its DynamoDB codec and store, aggregation
//   - pipeline/cdc: Postgres change data capture into profiles
//   - pipeline/deadletter: refused inputs, kept with their reason
//   - pipeline/delivery: rendered messages out to email providers: RFC 5322 output, the relay
//     over SMTP or SES, and an SMTP sink for tests and benchmarks (pipeline/delivery/smtpsink)
//
// This package itself holds no code.
package pipeline
