// Package deadletter keeps every input Tailor refused (invalid events, records the consumer
// cannot decode, row changes DynamoDB refuses, rejected webhooks), raw, with the reason, in the
// Postgres table dead_letters, and counts each once by source (tailor_dead_letters_total).
// Nothing is dropped silently: a refusal that cannot be recorded is an error for the caller.
//
// It stores and lists letters only; re-validating and re-sending them (tailor deadletters
// replay) is the job of the package that owns the input (pipeline/events). It must not import
// the other pipeline packages.
package deadletter
