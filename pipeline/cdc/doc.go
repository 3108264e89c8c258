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
// A write only happens if its version is newer than the one stored (the store compares plain
// numbers: stored < version). A streamed change's version is its transaction's commit LSN V
// plus 1 plus the change's generation g, 0 <= g <= 32. A commit record is at least 34 bytes
// long, so V+1 ... V+33 lie below the next transaction's commit LSN and above every version of
// an earlier transaction: transactions stay ordered by commit.
//
// Postgres (pgoutput, protocol 1) sends a transaction only after it committed, and CDC applies
// it while it arrives: in segments of SegmentChanges changes or SegmentBytes of WAL, cut at the
// same changes whenever the transaction is decoded. Memory is bounded by about BatchSize +
// SegmentChanges row changes, however many rows one transaction changes. Changes of one row
// that are buffered together are merged into one write (a delete and re-insert of one customer
// become the re-insert). A customer's generation starts at 0 and goes up by one in each later
// segment of the transaction in which the customer appears again, so a later change of the same
// customer, applied in a later batch, wins over the earlier one. The slot's confirmed position
// only moves past the transaction after its commit message arrived and every write of it
// succeeded. A crash in between replays the whole transaction; the segments, hence the
// versions, are the same, so what was applied is a no-op and nothing older overwrites anything
// newer on the way. A TRUNCATE is a barrier whose generation is above every change before it
// in its transaction (also those already applied) and below every change after it. A
// transaction that uses up its generations (a customer in more than 31 of its segments, or many
// TRUNCATEs) is held in memory from there on until its commit, and a warning says so.
//
// Upserts of one row by several transactions of the same batch are merged too (one write with
// the later version); deletes and TRUNCATEs never are. Changes of one customer are applied in
// commit order, and within a transaction in change order, by one writer; customers are spread
// over Config.Workers writers. Readers may see part of a big transaction before the rest (as
// with any batch: DynamoDB writes are not atomic across items). The initial backfill (and
// tailor cdc resync) uses the consistent point C of its exported snapshot as its version: every
// transaction the slot streams commits at or after C, so its versions (C+1 and up) are newer,
// and the snapshot never overwrites a newer streamed change nor the other way round.
//
// Profiles written before generations existed carry plain commit LSNs: after the upgrade, the
// unconfirmed transactions are applied once more with the same values. An older CDC must not
// take over from this one (as a standby of an earlier release, say): its versions are lower,
// and it would refuse the rest of a half-applied transaction.
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
// # Refused changes and failures
//
// A change DynamoDB refuses for what the row holds (profile.ErrWriteRefused: an item over
// 400 KB, nesting too deep, a number out of range) goes to dead_letters with source "cdc"
// (Config.DeadLetters) and the stream goes on; the profile then lags that row until it changes
// again or a resync. A failure that may go away (a lost connection, Postgres restarting,
// throttling) stops the stream, which restarts from the confirmed position with backoff:
// nothing is skipped. A misconfiguration that retrying cannot fix ends Run with a *ConfigError
// (errors.Is(err, ErrPermanent)) saying what to fix: wal_level is not logical, authentication
// failed, the role may not replicate or create the publication, the database or a published
// table does not exist, the slot's name is taken by a physical slot or another plugin's, the
// slot was invalidated, the profiles table does not exist, the AWS credentials are refused, or
// DynamoDB refuses a request as invalid for another reason than its data (a bug, which must not
// fill dead letters). Postgres errors are classified by SQLSTATE, DynamoDB errors by code.
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
