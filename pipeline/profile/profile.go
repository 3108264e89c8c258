package profile

import (
	"time"
)

// Profile is one customer's unified profile: CRM fields and preferences from Postgres (through
// CDC), behavioural features from the event stream, and bookkeeping. It is decoded from, and
// encoded to, one DynamoDB item by this package's codec (Decode, Encode); segments and
// templates read it through one view, Fields.
type Profile struct {
	// ID is the customer id (customers.id), or an anonymous id for a profile built from events
	// only.
	ID string
	// CRM holds the customers row. Its Email is empty when there is no row (a profile from
	// events only, or a customer whose row was deleted).
	CRM CRM
	// CRMVersion is the version (commit LSN) of the last customers change applied.
	CRMVersion uint64
	// Subscriptions are the customer's subscriptions rows by topic; deleted rows are absent.
	Subscriptions map[string]Subscription
	// Consents are the customer's consents rows by purpose; deleted rows are absent.
	Consents map[string]Consent
	// Behaviour are the features aggregated from events.
	Behaviour Features
	// ErasedAt is set when the customer's personal data was erased (GDPR): such a profile holds
	// no CRM or behavioural data, is in no audience, and events for it are not aggregated.
	ErasedAt time.Time
	// UpdatedAt is the time of the last CRM or preference write.
	UpdatedAt time.Time
}

// CRM is a customers row. The known columns are typed; every other column of customers and the
// keys of its attributes jsonb live in Attributes, a namespace of their own, so a CRM column can
// never overwrite a computed field (a column named "orders" is attributes.orders).
type CRM struct {
	Email     string
	FirstName string
	LastName  string
	Locale    string // e.g. "de-DE"; templates format money and dates by it
	Timezone  string // IANA name, e.g. "Europe/Berlin"
	Country   string // ISO 3166-1 alpha-2, as the CRM stores it
	CreatedAt time.Time
	UpdatedAt time.Time // customers.updated_at
	// Attributes are the attributes jsonb merged with the other customers columns; a column wins
	// over a jsonb key of the same name.
	Attributes map[string]any
}

// Subscription statuses (subscriptions.status).
const (
	StatusSubscribed   = "subscribed"
	StatusUnsubscribed = "unsubscribed"
	StatusPending      = "pending"
)

// Subscription is one subscriptions row.
type Subscription struct {
	Status    string // StatusSubscribed, StatusUnsubscribed or StatusPending
	Source    string // who made the change: crm, webhook, preference_page, one_click, ...
	UpdatedAt time.Time
	Version   uint64 // the commit LSN of the row's last change
}

// Consent is one consents row.
type Consent struct {
	Granted bool
	Source  string
	At      time.Time
	Version uint64 // the commit LSN of the row's last change
}

// Subscribed reports whether the customer is subscribed to topic.
func (p *Profile) Subscribed(topic string) bool {
	return p.Subscriptions[topic].Status == StatusSubscribed
}

// Consented reports whether the customer granted consent for purpose.
func (p *Profile) Consented(purpose string) bool {
	return p.Consents[purpose].Granted
}

// Erased reports whether the customer's data was erased.
func (p *Profile) Erased() bool { return !p.ErasedAt.IsZero() }

// Reachable reports whether the profile can receive email: it has an address and was not erased.
func (p *Profile) Reachable() bool { return p.CRM.Email != "" && !p.Erased() }
