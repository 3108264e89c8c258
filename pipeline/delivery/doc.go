// Package delivery is the far end of the pipeline: it turns rendered messages into what email
// providers take and hands them over.
//
//   - Message and Outcome are a message as a sender claims it and the answer it acks, in the
//     vocabulary of the sender API (sent, bounced hard or soft, complained, failed, retry).
//
//   - MIMEBuilder builds a complete RFC 5322 message (multipart/alternative text + HTML,
//     RFC 2047 headers, Message-ID, List-Unsubscribe, List-Id, Feedback-ID, campaign headers)
//     with github.com/emersion/go-message. Profile data can never add a header: control
//     characters in names, subjects and header values are neutralised.
//
//   - Relay claims messages from a Source, delivers them through a Sender (SMTPSender over
//     pooled connections, or SESSender) with a concurrency and rate limits, and acks each
//     provider answer as an Outcome: 2xx sent, 5xx bounced (hard), 4xx retry with backoff and a
//     soft bounce once the attempts are spent.
//
//   - Store is the claim / lease / ack store over rendered_messages (SQS-like: FOR UPDATE SKIP
//     LOCKED claims with a lease and a receipt; an expired lease makes a message ready again;
//     the claim re-checks suppression, subscription and consent in Postgres; acks are taken
//     under the current receipt only; hard bounces and complaints join the suppression list).
//     Store.Source is its Relay Source; Store.Export hands batches to tailor messages export;
//     DeleteBodies is body retention (the River job lives in package jobs).
//
//   - Outbox publishes the events that acks (and tracking, through EnqueueEvents) write in
//     their own transaction to delivery_outbox, so an ack never loses its event and never
//     waits for Kinesis; at least once, deduplicated downstream by event id.
//
//   - SMTPSender pipelines MAIL, RCPT and BDAT LAST with the message in one write when the
//     server offers PIPELINING and CHUNKING (one round trip per message, no dot-stuffing),
//     else it uses go-smtp's DATA.
//
// The Relay knows its messages only through Source, so the claim / lease / ack store over
// rendered_messages plugs in without the Relay changing. This package must not import the
// HTTP layer (internal/httpapi: handlers map its errors to status codes), the jobs package or
// internal/app. Its test sink, smtpsink, never listens beyond loopback.
package delivery
