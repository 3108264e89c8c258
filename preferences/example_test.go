package preferences_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/tailor-email/tailor/preferences"
)

// A token carries the recipient, campaign and topic of one message; any change to it, or its
// age, is detected.
func ExampleTokens() {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	tokens, err := preferences.NewTokens(preferences.TokensConfig{
		Keys: []preferences.TokenKey{{ID: "k2", Secret: bytes.Repeat([]byte{2}, 32)}, {ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)}},
		TTL:  24 * time.Hour, Now: func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	tok, _ := tokens.Mint(preferences.Claims{CustomerID: "c-1042", CampaignID: 7, Topic: "news"})
	c, err := tokens.Parse(tok)
	fmt.Println(c.CustomerID, c.CampaignID, c.Topic, c.ExpiresAt.Format(time.RFC3339), err)
	_, err = tokens.Parse(tok[:len(tok)-1] + "A")
	fmt.Println(err)
	now = now.Add(25 * time.Hour)
	_, err = tokens.Parse(tok)
	fmt.Println(err)
	// Output:
	// c-1042 7 news 2026-12-01T09:00:00Z <nil>
	// preference link is not valid
	// preference link has expired
}

// A webhook body is validated against the schema before anything is written.
func ExampleDecodeChangeSet() {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	cs, err := preferences.DecodeChangeSet([]byte(`{"email":"Ada@Example.com","occurred_at":"2026-11-30T08:59:00Z",
		"topics":{"news":"subscribed"},"consents":[{"purpose":"email_marketing","granted":true}]}`), now)
	fmt.Println(cs.Email, cs.Topics, cs.Consents, err)
	_, err = preferences.DecodeChangeSet([]byte(`{"customer_id":"c-1","occurred_at":"2026-11-30T08:59:00Z","topics":{"news":"maybe"}}`), now)
	fmt.Println(err)
	// Output:
	// ada@example.com map[news:subscribed] [{email_marketing true }] <nil>
	// /topics/news: value must be one of 'subscribed', 'unsubscribed', 'pending'
}
