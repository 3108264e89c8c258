// Package preferences owns what recipients allow: the topics catalogue, subscriptions and
// consents (the Postgres system of record that CDC carries to profiles), the suppression list,
// their append-only audit log (preference_audit), and the eligibility check every send path
// runs against Postgres (no replication lag): at render time (jobs) and again when a sender
// claims a message. Around that it holds the preference center's domain logic, with no HTTP in
// it (preferences/web maps its errors to status codes):
//
//   - change sets from a preference center (DecodeChangeSet, JSON Schema ChangeSetSchema) and
//     Store.Receive, which applies a verified webhook exactly once per webhook-id (24 h);
//   - preference tokens (Tokens): HMAC-signed, expiring, key-rotated links carrying the
//     customer, the campaign and its topic; Links mints them into every rendered message;
//   - the hosted page's state and choices (Store.Page, Store.SavePage) and the RFC 8058
//     one-click unsubscribe (Store.OneClick);
//   - erasure and export (Store.Forget, Store.Export).
//
// # Guarantees
//
// Every change (webhook, page, one-click) commits with its audit row in one transaction; an
// answer means it is durable. Subscriptions and consents are ordered by when the change
// happened (occurred_at; now for the page and one-click): a change older than the stored row
// is recorded as stale and not applied, so out-of-order deliveries converge. Repeating a
// webhook (same id and body), a one-click or a page save changes nothing more.
//
// # Erasure and suppressions
//
// Forget deletes a customer's rows everywhere in Postgres (customers with subscriptions and
// consents, rendered messages, audit rows, webhook records, dead letters that mention the id or
// address) and erases the DynamoDB profile (the marker it leaves stops the event path from
// aggregating into it again). A suppression (global unsubscribe, hard bounce, complaint) must
// outlive the customer, or a re-imported address would be mailed again: erasure keeps only the
// SHA-256 of the lower-cased address and the reason (erased_suppressions), which Check matches.
// One audit row without personal data (the SHA-256 of each id, the counts) records the erasure.
//
// It must not import jobs, templates or the pipeline packages other than pipeline/profile
// (its types and constants): campaigns and senders call it, not the other way round.
package preferences
