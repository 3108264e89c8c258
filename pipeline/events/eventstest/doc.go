// Package eventstest builds events for tests of the ingestion limits. Tests only; it imports
// nothing of Tailor.
package eventstest
