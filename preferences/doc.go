// Package preferences owns what recipients allow: the topics catalogue, subscriptions and
// consents (the Postgres system of record that CDC carries to profiles), the suppression list,
// and the eligibility check every send path runs against Postgres (no replication lag): at
// render time (jobs) and again when a sender claims a message.
//
// It must not import jobs, templates or the pipeline packages other than pipeline/profile's
// constants: campaigns and senders call it, not the other way round.
package preferences
