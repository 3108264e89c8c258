// Package smtpsink is an SMTP server for tests, demos and benchmarks: it accepts mail on a
// loopback address (it refuses any other), counts what it accepts, optionally keeps or saves
// it, and answers as scripted: 4xx or 5xx for given recipients, domains or a share of them, at
// RCPT or after DATA, always or for the first few attempts. It can offer STARTTLS and require
// AUTH PLAIN, and hold deliveries (Pause) to show a relay's concurrency.
//
// It is built on github.com/emersion/go-smtp and imports nothing of Tailor: it stands for an
// email provider, so the relay is tested against a real SMTP conversation.
package smtpsink
