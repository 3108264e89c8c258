// Package ddb holds the few DynamoDB helpers Tailor's stores share: creating a table, reading
// many keys with BatchGetItem (retrying UnprocessedKeys), recognising a failed condition, and
// the retry backoff. It owns no table and no item layout: those belong to the stores
// (pipeline/profile, pipeline/stream).
//
// It imports only the AWS SDK and internal/ctxtime: every store may use it.
package ddb
