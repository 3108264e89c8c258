package delivery

import (
	"context"
	"time"
)

// Message is a rendered message as a sender claims it.
type Message struct {
	ID         int64  `json:"id"`
	CampaignID int64  `json:"campaign_id"`
	CustomerID string `json:"customer_id"`
	// Email is the recipient's address; Name their display name ("" for none).
	Email     string `json:"email"`
	Name      string `json:"name"`
	Subject   string `json:"subject"`
	Preheader string `json:"preheader"`
	HTML      string `json:"html"`
	Text      string `json:"text"`
	// Headers are the extra headers the render added (List-Unsubscribe and
	// List-Unsubscribe-Post for one-click unsubscribe).
	Headers map[string]string `json:"headers,omitempty"`
	// Attempt counts the earlier hand-outs of this message: 0 on its first claim.
	Attempt int `json:"attempt"`
	// Receipt identifies this claim's lease; an Outcome carries it back so that the Source can
	// refuse the ack of a lease that expired and went to another sender. Opaque to senders.
	Receipt string `json:"receipt"`
	// LeaseExpires is when the lease ends: after it, the message may go to another sender.
	LeaseExpires time.Time `json:"lease_expires_at,omitzero"`
}

// Status is the outcome of one delivery attempt, as a sender acks it.
type Status string

// Statuses.
const (
	StatusSent       Status = "sent"       // the provider accepted it (ProviderID when it said one)
	StatusBounced    Status = "bounced"    // refused for this recipient (Bounce: hard or soft; Reply)
	StatusComplained Status = "complained" // the recipient reported it as spam
	StatusFailed     Status = "failed"     // it cannot be sent as it is (Reason); not the recipient's fault
	StatusRetry      Status = "retry"      // try again later (RetryAfter)

	// statusSuppressed is no ack: a message held back at claim (its email_suppressed event).
	statusSuppressed Status = "suppressed"
)

// Bounce says whether a bounce is permanent.
type Bounce string

// Bounce kinds.
const (
	BounceHard Bounce = "hard" // the address does not work: suppress it
	BounceSoft Bounce = "soft" // temporary refusals until the attempts ran out
)

// Outcome is a sender's answer for one claimed message.
type Outcome struct {
	MessageID  int64  `json:"id"`
	CampaignID int64  `json:"campaign_id"`
	Receipt    string `json:"receipt"`
	Status     Status `json:"status"`
	Bounce     Bounce `json:"bounce,omitempty"`
	// ProviderID is the provider's id of an accepted message, when it gave one.
	ProviderID string `json:"provider_id,omitempty"`
	// Reply is the provider's answer, e.g. "550 5.1.1 <a@example.com>: user unknown".
	Reply string `json:"reply,omitempty"`
	// Reason says why a message failed or is retried, in words.
	Reason string `json:"reason,omitempty"`
	// RetryAfter is how long to wait before handing a retried message out again.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
}

// Source hands out messages to send and takes their outcomes: the claim / lease / ack store.
// Claim returns up to limit ready messages, each leased for lease: nobody else gets them
// until the lease expires or they are acked with StatusRetry. Ack records outcomes; an
// outcome whose lease expired may be refused (the message went to another sender) without
// failing the others. Both are called from several goroutines at once.
type Source interface {
	Claim(ctx context.Context, limit int, lease time.Duration) ([]Message, error)
	Ack(ctx context.Context, outcomes []Outcome) error
}
