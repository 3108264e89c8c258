// Package migrations holds Tailor's app schema as embedded, numbered SQL files and applies them,
// after River's own migrations (rivermigrate), in one transaction under an advisory lock, so
// concurrent `tailor migrate` runs are safe and a second run applies nothing.
//
// A migration file is NNN_name.sql; applied versions are recorded in tailor_migrations. Files are
// never edited once released: add a new one.
package migrations
