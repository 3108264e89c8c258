// Package delivery is the far end of the pipeline: it turns rendered messages into what email
// providers take and hands them over.
//
//   - Message and Outcome are a message as a sender claims it and the answer it acks, in the
//     vocabulary of the sender API (sent, bounced hard or soft, complained, failed, retry).
//   - MIMEBuilder builds a complete RFC 5322 message (multipart/alternative text + HTML,
//     RFC 2047 headers, Message-ID, List-Unsubscribe, List-Id, Feedback-ID, campaign headers)
//     with github.com/emersion/go-message. Profile data can never add a header: control
//     characters in names, subjects and header values are neutralised.
//   - Relay claims messages from a Source, delivers them through a Sender (SMTPSender over
//     pooled connections, or SESSender) with a concurrency and rate limits, and acks each
//     provider answer as an Outcome: 2xx sent, 5xx bounced (hard), 4xx retry with backoff and a
//     soft bounce once the attempts are spent.
//
// The Relay knows its messages only through Source, so the claim / lease / ack store over
// rendered_messages plugs in without the Relay changing. This package must not import the
// HTTP layer (internal/httpapi: handlers map its errors to status codes), the jobs package or
// internal/app. Its test sink, smtpsink, never listens beyond loopback.
package delivery
