// Package events is the behavioural event contract: the JSON Schema (version 1), decoding and
// normalisation (UTC timestamps, trimmed ids, upper-case ISO 4217 currency, money as integer
// minor units), ingestion (validate, publish to the stream, dead-letter every refusal with its
// reason), the stream Processor that turns records back into events for the profile writer,
// and dead-letter replay.
//
// It has no HTTP types (the POST /v1/events handler is internal/httpapi's) and does not
// aggregate events into profiles (pipeline/profile does). It must not import pipeline/profile,
// pipeline/cdc or pipeline/deadletter (it defines the small interfaces it needs of them).
package events
