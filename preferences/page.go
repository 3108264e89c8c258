package preferences

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tailor-email/tailor/pipeline/profile"
)

// TopicChoice is one topic as the preference page lists it.
type TopicChoice struct {
	Name        string
	Description string
	Status      string // the customer's: the subscriptions row's, or the topic's default
}

// Subscribed reports whether the box is ticked.
func (t TopicChoice) Subscribed() bool { return t.Status == profile.StatusSubscribed }

// Page is what the preference page shows the recipient of a link: every active topic with its
// state and the global unsubscribe. It is read from Postgres, so it shows the latest state.
type Page struct {
	CustomerID string
	Email      string
	Locale     string // customers.locale, e.g. "de-DE"; "" when unknown
	// CampaignTopic is the topic of the message the link came from ("" for none).
	CampaignTopic string
	Topics        []TopicChoice
	// UnsubscribedAll: the address is globally unsubscribed (the recipient can undo that).
	UnsubscribedAll bool
	// Blocked is the reason of a suppression the recipient cannot undo (hard_bounce,
	// complaint, manual), "" when there is none.
	Blocked string
	// MarketingConsent: the customer has granted the email_marketing consent that every
	// campaign with a topic requires. Without it, ticked topics bring no campaign.
	MarketingConsent bool
}

// MaskedEmail is the address with most of its local part hidden (a***@example.com), so a
// forwarded link shows less.
func (p *Page) MaskedEmail() string {
	local, domain, ok := strings.Cut(p.Email, "@")
	if !ok || local == "" {
		return ""
	}
	return local[:1] + "***@" + domain
}

// Page returns the page for a verified token's claims, or ErrUnknownCustomer.
func (s *Store) Page(ctx context.Context, c Claims) (*Page, error) {
	return s.page(ctx, s.db, c)
}

func (s *Store) page(ctx context.Context, q Querier, c Claims) (*Page, error) {
	cust, err := s.customerByID(ctx, q, c.CustomerID)
	if err != nil {
		return nil, err
	}
	p := &Page{CustomerID: cust.ID, Email: cust.Email, Locale: cust.Locale, CampaignTopic: c.Topic}
	rows, err := q.Query(ctx, queries.Get("page-topics"), cust.ID)
	if err != nil {
		return nil, fmt.Errorf("preference page: %w", err)
	}
	p.Topics, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (TopicChoice, error) {
		var t TopicChoice
		return t, r.Scan(&t.Name, &t.Description, &t.Status)
	})
	if err != nil {
		return nil, fmt.Errorf("preference page: %w", err)
	}
	if err := q.QueryRow(ctx, queries.Get("page-consent"), cust.ID, PurposeEmailMarketing).Scan(&p.MarketingConsent); err != nil {
		return nil, fmt.Errorf("preference page: %w", err)
	}
	var reason string
	err = q.QueryRow(ctx, queries.Get("suppression-of"), cust.Email, cust.ID).Scan(&reason)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("preference page: %w", err)
	case reason == "unsubscribed":
		p.UnsubscribedAll = true
	default:
		p.Blocked = reason
	}
	return p, nil
}

// Choices is what the recipient saved: the topics ticked (every other listed topic is
// unsubscribed), the global unsubscribe, and the email_marketing consent when the form
// showed it (nil: left as it is).
type Choices struct {
	Subscribed       map[string]bool
	UnsubscribeAll   bool
	MarketingConsent *bool
}

// SavePage applies the recipient's choices in one transaction with one audit row (source
// preference_page) and returns the page as it is now. Only topics and the consent whose state
// changes are written. Ticking a topic grants no consent: the recipient gives or withdraws
// the email_marketing consent with its own box, stated on the page. Saving the same choices
// again changes nothing. Errors: ErrUnknownCustomer.
func (s *Store) SavePage(ctx context.Context, c Claims, ch Choices) (*Page, error) {
	var out *Page
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		cur, err := s.page(ctx, tx, c)
		if err != nil {
			return err
		}
		topics := map[string]string{}
		for _, t := range cur.Topics {
			if want := ch.Subscribed[t.Name]; want != t.Subscribed() {
				topics[t.Name] = profile.StatusUnsubscribed
				if want {
					topics[t.Name] = profile.StatusSubscribed
				}
			}
		}
		var consents []ConsentChange
		if ch.MarketingConsent != nil && *ch.MarketingConsent != cur.MarketingConsent {
			consents = append(consents, ConsentChange{Purpose: PurposeEmailMarketing, Granted: *ch.MarketingConsent, Source: SourcePage})
		}
		all := ch.UnsubscribeAll
		if _, err := apply(ctx, tx, change{
			customerID: cur.CustomerID, email: cur.Email, source: SourcePage, requestID: campaignRef(c),
			occurredAt: s.now().UTC(), topics: topics, consents: consents, unsubscribeAll: &all,
		}); err != nil {
			return err
		}
		out, err = s.page(ctx, tx, c)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Unsubscribed says what a one-click unsubscribe did.
type Unsubscribed struct {
	Topic   string // the topic unsubscribed from; "" for a global unsubscribe
	Changed bool   // false when it was already so (a repeated POST)
}

// OneClick is the RFC 8058 unsubscribe of a verified token's recipient: from the token's topic
// when it has one, else from everything (the address joins suppressions with reason
// unsubscribed). It is idempotent: repeating it changes nothing and writes no audit row.
// Errors: ErrUnknownCustomer (the customer was deleted or forgotten).
func (s *Store) OneClick(ctx context.Context, c Claims) (Unsubscribed, error) {
	out := Unsubscribed{Topic: c.Topic}
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		cust, err := s.customerByID(ctx, tx, c.CustomerID)
		if err != nil {
			return err
		}
		ch := change{customerID: cust.ID, email: cust.Email, source: SourceOneClick, requestID: campaignRef(c), occurredAt: s.now().UTC()}
		if c.Topic == "" {
			all := true
			ch.unsubscribeAll = &all
		} else {
			var status string
			err := tx.QueryRow(ctx, queries.Get("subscription-status"), cust.ID, c.Topic).Scan(&status)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("one-click unsubscribe: %w", err)
			}
			if status == profile.StatusUnsubscribed {
				return nil
			}
			ch.topics = map[string]string{c.Topic: profile.StatusUnsubscribed}
		}
		r, err := apply(ctx, tx, ch)
		if err != nil {
			return err
		}
		out.Changed = len(r.Applied.Topics) > 0 || r.Suppression != ""
		return nil
	})
	return out, err
}

// campaignRef is the audit's request_id of a change made through a message's link.
func campaignRef(c Claims) string {
	if c.CampaignID == 0 {
		return ""
	}
	return "campaign:" + strconv.FormatInt(c.CampaignID, 10)
}
