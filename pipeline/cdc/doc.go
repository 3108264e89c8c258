// Package cdc copies the CRM tables of Postgres (customers, subscriptions, consents) into the
// DynamoDB profiles through logical replication (pgoutput, protocol version 1): one permanent
// slot, one publication covering exactly those three tables, one active process per slot.
//
// It owns the publication, the replication slot, the cdc_slots bookkeeping table (which records
// that a slot's initial backfill finished) and the CRM part of each profile. It must not write
// any other Postgres table, nor profile attributes that other sources own (behavioural features).
//
// # Guarantees
//
// A change reaches DynamoDB at least once and takes effect exactly once. The slot's confirmed
// position (the flush position of every standby status update, always set explicitly) only moves
// past a transaction after every write of that transaction, and of every earlier one, succeeded.
// After a crash, a restart or a Postgres restart the stream resumes at the confirmed position and
// replays what was not confirmed; version guards make those replays no-ops.
//
// # Versions
//
// Every write carries the commit LSN of its transaction as its version, and a write only happens
// if that version is newer than the one stored. Changes of one transaction to the same row are
// merged in memory before the commit is applied, so a transaction writes each row once (memory
// per transaction is bounded by the rows it changes; a transaction that rewrites millions of
// rows needs memory for all of them; a delete and re-insert of one customer in one transaction
// become the re-insert). Upserts of one row by several transactions of the same
// batch are merged too (one write with the later version); deletes and TRUNCATEs never are.
// Changes of one customer are applied in commit order by one writer; customers are spread over
// Config.Workers writers. The initial backfill (and tailor cdc resync)
// uses the consistent point of its exported snapshot: every transaction the slot streams commits
// after it, so the snapshot never overwrites a newer streamed change and vice versa.
//
// # Profile layout
//
//	customer_id                 the key: customers.id (for child tables: their customer_id)
//	email, first_name, ...      one attribute per customers column, NULL removes it;
//	                            attributes (jsonb) is a decoded map; columns whose names collide
//	                            with profile bookkeeping (updated_at, crm_lsn, subscriptions,
//	                            consents, count_*, ...) get a "crm_" prefix: customers.updated_at
//	                            is crm_updated_at (updated_at is the profile's last write).
//	crm_lsn                     version of the customers row (the guard of the fields above)
//	subscriptions.<topic>       {status, source, updated_at, lsn}: one entry per subscriptions
//	                            row, each guarded by its own lsn
//	consents.<purpose>          {granted, source, at, lsn}: one entry per consents row
//	subscriptions_lsn,          floors: an entry is only written when its version is newer than
//	consents_lsn                the floor as well (raised by erasure and TRUNCATE)
//
// A deleted subscriptions or consents row leaves a tombstone entry {lsn, deleted: true}, so a
// replayed older change cannot bring it back; readers treat an entry without status / granted
// as absent.
//
// Deleting a customers row is a GDPR erasure: the profile keeps its item (behavioural features are
// erased by the preferences package's erasure flow, not by CDC) but loses every CRM attribute,
// and both maps are emptied with their floors raised to the delete's version. TRUNCATE of
// customers removes the CRM attributes of every profile; TRUNCATE of a child table empties that
// map on every profile (both scan the profiles table). Columns added with ALTER TABLE reach the
// profiles from the next change on (pgoutput sends a new Relation message); values of rows that
// were not changed since arrive with the next change or a resync.
//
// The initial backfill (like a resync) also erases what profiles hold of rows the snapshot does
// not have, older than its version: rows deleted while no slot existed are not left behind.
//
// An UPDATE that leaves a TOASTed column unchanged does not send it (tuple data 'u'): the
// attribute is left as it is. Child-table columns are short (CHECKed) so they are never TOASTed.
//
// # Refused changes
//
// A change DynamoDB refuses for good (pipeline.ErrWriteRefused: an item over 400 KB) goes to
// dead_letters with source "cdc" (Config.DeadLetters) and the stream goes on; the profile then
// lags that row until it changes again or a resync. Any other error stops the stream, which
// restarts from the confirmed position with backoff: nothing is skipped.
//
// # Running
//
// Run takes a session advisory lock derived from the slot name on an ordinary connection before
// touching the slot: a second process waits as a standby, polling the lock, and takes over when
// the first one's session ends. The active process checks its lock session at every heartbeat
// and gives up the slot if it died. ReadStatus reports the slot's lag and retained WAL (tailor cdc
// status), Collector exports the same as Prometheus gauges, and Resync re-backfills every row from
// a fresh snapshot of a temporary slot (tailor cdc resync). MetricsCollectors are the streaming
// process's own counters (rows applied, dead letters, confirmed LSN, commit-to-profile latency).
package cdc
