// Package jobs holds Tailor's campaigns and the River jobs that run them:
//
//	campaign create (a draft, or scheduled: campaigns row + campaign.start job in one transaction)
//	  -> campaign.start: a parallel DynamoDB scan page by page from a persisted cursor per
//	     segment (campaign_scan_segments); each page's render batches (unique by arguments,
//	     grouped by send time) are enqueued with InsertManyTx in the transaction that moves
//	     its cursor; time-sliced (snoozes to go on), so every run is bounded.
//	  -> render.batch: read the profiles (BatchGetItem, or the scanned items with
//	     Config.RenderFromScan), check eligibility against Postgres (preferences.Check:
//	     suppression, topic subscription, consent), render (a campaign created with Track gets
//	     its HTML rewritten by Config.Tracker: pipeline/tracking), apply the frequency cap under
//	     per-customer advisory locks, and record one rendered_messages row per recipient with
//	     its send time (not_before) or the reason it was left out; the insert keeps the
//	     campaign's counters, and the last one completes the campaign.
//	  -> render.triggered: a triggered campaign's one recipient, enqueued by Triggers from the
//	     consumer's profile writes, after its delay, once per window.
//
// Lifecycle: Transitions lists what each action applies to (draft, scheduled, running, paused,
// rendered, cancelled, failed). Pause makes render jobs snooze, cancel cancels unclaimed
// messages in its transaction. Every job is idempotent: rendered_messages is unique per
// (campaign, customer, occurrence) and inserts skip existing rows; a template fault fails the
// campaign (river.JobCancel), a recipient's budget breach skips that recipient, a per-profile
// segment error is counted with its reason. River's settings are explained on NewClient.
//
// It reads profiles (pipeline/profile) and the trigger's event type (pipeline/events, which
// profile imports already), renders (templates) and checks eligibility (preferences); it does
// not consume the stream, run CDC or send mail, and must not import pipeline/stream or
// pipeline/cdc.
package jobs
