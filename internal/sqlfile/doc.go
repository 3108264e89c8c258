// Package sqlfile loads named queries from .sql files, so SQL lives in .sql files rather than in
// string literals: each query starts with a line "-- name: NAME" and runs to the next such line.
//
// It imports nothing of Tailor.
package sqlfile
