// Package pipeline is the home of the stages that move customer data into profiles, one
// package each:
//
//   - pipeline/events: the behavioural event contract, ingestion and the stream processor
//   - pipeline/stream: the Kinesis producer and the lease-based consumer
//   - pipeline/profile: the typed customer profile, its DynamoDB codec and store, aggregation
//   - pipeline/cdc: Postgres change data capture into profiles
//   - pipeline/deadletter: refused inputs, kept with their reason
//
// This package itself holds no code.
package pipeline
