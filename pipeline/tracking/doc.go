// Package tracking is engagement tracking, off unless a campaign asks for it
// (campaigns.track: opens, clicks):
//
//   - Tokens mints and verifies the signed tokens of tracking links: HMAC-SHA256 (truncated to
//     128 bits) over a versioned, compact payload that names the key, the kind (open or click),
//     the expiry, the campaign, the customer, the message's occurrence (a rendered message is
//     keyed by campaign, customer and occurrence: its row id does not exist when it is
//     rendered) and, for a click, the target URL. The keys are derived (HKDF-SHA256 with a
//     label of their own) from the preference-link keys, so there is no second secret to
//     manage and a tracking MAC can never pass for a preference token.
//   - Rewriter rewrites a rendered message's HTML as it is rendered: http(s) links become
//     PUBLIC_URL/t/c/TOKEN redirects and an open pixel PUBLIC_URL/t/o/TOKEN goes before
//     </body>. A scanner that reads HTML as the golang.org/x/net/html tokenizer does (a
//     differential fuzz test holds it to that) finds the links without allocating, and
//     everything but the replaced href values is copied byte for byte. The text part is left
//     alone: where a URL ends in free text is guesswork.
//   - Handler answers GET /t/o/TOKEN (always a 1x1 GIF) and GET /t/c/TOKEN (a 302 to the
//     signed target only; a refused token gets 400 and no Location, so there is no open
//     redirect) and records valid hits as email_open / email_click events in the delivery
//     outbox (delivery.EnqueueEvents), from which the outbox publisher ships them to Kinesis.
//
// This package must not import jobs, the CLI or internal/app; it writes only to
// delivery_outbox, through package delivery.
package tracking
