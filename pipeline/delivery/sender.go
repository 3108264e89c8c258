package delivery

import (
	"context"
	"fmt"
	"regexp"
)

// Envelope is what a provider delivers to, apart from the message itself: the SMTP envelope.
type Envelope struct {
	From string // the bounce address (MAIL FROM)
	To   string // the recipient (RCPT TO)
}

// SendResult is a provider's acceptance of a message.
type SendResult struct {
	// ProviderID is the provider's id for the message ("" when it gave none).
	ProviderID string
	// Reply is the provider's answer, e.g. "250 2.0.0 OK: queued as 4ABC".
	Reply string
}

// Sender hands one message to a provider. Send returns a *RejectError when the provider
// refused the message, and another error when it could not ask (network, TLS): the Relay
// retries those. Send is called from many goroutines at once. raw is the Relay's until Send
// returns (it reuses the buffer for the next message): a Sender that needs it later copies it.
type Sender interface {
	Send(ctx context.Context, env Envelope, raw []byte) (SendResult, error)
}

// Stage says what a provider refused.
type Stage string

// Stages of a refusal.
const (
	StageSender    Stage = "sender"    // the sending account or bounce address (MAIL FROM, SES account): no recipient's fault
	StageRecipient Stage = "recipient" // this recipient (RCPT TO)
	StageData      Stage = "data"      // the message, after its data was sent (the reply to DATA)
	StageMessage   Stage = "message"   // the message before any recipient saw it (SES MessageRejected)
)

// RejectError is a provider's refusal of one message.
type RejectError struct {
	// Code is the SMTP reply code (4xx temporary, 5xx permanent), or the nearest one for a
	// provider that does not speak SMTP.
	Code  int
	Stage Stage
	// Reply is the provider's answer as it said it, e.g. "550 5.1.1 user unknown".
	Reply string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("provider refused the %s: %s", e.Stage, e.Reply)
}

// Temporary reports whether the provider asked to try again later (a 4xx code).
func (e *RejectError) Temporary() bool { return e.Code/100 == 4 }

// Provider ids in 250 replies: Postfix and most MTAs say "queued as ID"; Amazon SES's SMTP
// interface says "Ok ID".
var (
	queuedAsRE = regexp.MustCompile(`(?i)\bqueued as\s+<?([^\s<>;,]+)`)
	okIDRE     = regexp.MustCompile(`(?i)^(?:\d\.\d{1,3}\.\d{1,3}\s+)?ok\s+<?([0-9A-Za-z][0-9A-Za-z._@-]{7,})>?\s*$`)
)

// ProviderID finds the provider's message id in the text of a 250 reply, or returns "".
func ProviderID(reply string) string {
	if m := queuedAsRE.FindStringSubmatch(reply); m != nil {
		return m[1]
	}
	if m := okIDRE.FindStringSubmatch(reply); m != nil {
		return m[1]
	}
	return ""
}
