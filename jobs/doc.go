// Package jobs holds Tailor's River jobs and the campaign lifecycle they drive:
//
//	campaign create (one transaction: campaigns row + campaign.start job)
//	  -> campaign.start: stream the audience (parallel DynamoDB scan, segment filter) and
//	     enqueue render.batch jobs with InsertManyTx, 100 recipients each
//	  -> render.batch: batch-get the profiles, render the template (templates), store one
//	     rendered_messages row per (campaign, customer); the last batch marks the campaign rendered.
//
// Every job is idempotent: rendered_messages is unique per (campaign, customer) and inserts skip
// existing rows, so River may run any job twice. Permanent failures (a broken template) cancel
// the job with river.JobCancel; transient ones retry.
//
// The package reads profiles (pipeline/profile: the typed model and its Fields view, which
// segments are type-checked against) and renders (templates); it does not consume events, run
// CDC or send mail, and must not import pipeline/stream, pipeline/cdc or pipeline/events.
package jobs
