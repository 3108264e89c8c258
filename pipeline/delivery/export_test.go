package delivery

import (
	"context"
	"time"
)

// HeaderText is headerText, for tests that check a header's round trip.
var HeaderText = headerText

// WithClock gives a relay config the clock its rate limits read and wait on.
func WithClock(cfg RelayConfig, now func() time.Time, wait func(context.Context, time.Duration) error) RelayConfig {
	cfg.now, cfg.rateWait = now, wait
	return cfg
}

// EventReason is eventReason, for the test of what an event carries of a reply.
var EventReason = eventReason

// BodyTagEnd is bodyTagEnd, for its differential test against the regular expression.
var BodyTagEnd = bodyTagEnd

// LongestWord is longestWord, for its test against strings.Fields.
var LongestWord = longestWord
