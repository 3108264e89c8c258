// Package stream moves records through Kinesis: the producer (PutRecords with retries of
// partial failures and throttling), the consumer (shard leases and checkpoints in DynamoDB,
// modelled on the KCL: claim, renew, steal and release through conditional writes; children
// after their parents), and the Processor interface the consumer hands each shard's batches
// to. A checkpoint advances only after the processor returned, that is after the batch's
// effects are durable. Data past the stream's retention period is skipped loudly, never
// waited for: an expired checkpoint restarts its shard at TRIM_HORIZON and a deleted parent
// shard counts as finished (see shardReader).
//
// It knows nothing of what records mean: decoding events is pipeline/events' job, profiles
// are pipeline/profile's. It must not import either.
package stream
