package profile_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/profile/profiletest"
)

// benchProfile is a profile as a campaign reads it: CRM fields, a list of product picks in
// its attributes, two preference entries and some weeks of events.
func benchProfile(now time.Time) *profile.Profile {
	picks := make([]any, 5)
	for i := range picks {
		picks[i] = map[string]any{"sku": fmt.Sprintf("SKU-%05d", 10000+i), "name": "Relaxed Linen Shirt", "category": "clothing",
			"price": 4990.0, "was": 0.0, "image": "relaxed-linen-shirt", "blurb": "Cut for an easy fit and made to last. Machine washable at 30°C."}
	}
	p := &profile.Profile{ID: "c-1042", CRM: profile.CRM{Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace", Locale: "en-GB",
		Timezone: "Europe/London", Country: "GB", CreatedAt: now.AddDate(-1, 0, 0), Attributes: map[string]any{"tier": "gold", "picks": picks}},
		Subscriptions: map[string]profile.Subscription{"news": {Status: profile.StatusSubscribed, Source: "crm", UpdatedAt: now, Version: 7}},
		Consents:      map[string]profile.Consent{"email_marketing": {Granted: true, Source: "crm", At: now, Version: 8}}}
	p.Behaviour.Aggregate(profiletest.GenEvents(rand.New(rand.NewPCG(1, 2)), 60, 1, now))
	return p
}

// BenchmarkFields measures the read view a segment and a template get per recipient: of a
// profile with weeks of events, and of one with CRM data only (most of a campaign's audience,
// and the campaign benchmarks' recipients).
func BenchmarkFields(b *testing.B) {
	now := time.Now().UTC()
	crmOnly := benchProfile(now)
	crmOnly.Behaviour = profile.Features{}
	for _, c := range []struct {
		name string
		p    *profile.Profile
	}{{"events", benchProfile(now)}, {"crm_only", crmOnly}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.p.Fields(now)
			}
		})
	}
}

// BenchmarkDecode measures decoding one scanned item.
func BenchmarkDecode(b *testing.B) {
	now := time.Now().UTC()
	item, err := profile.Encode(benchProfile(now))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := profile.Decode(item); err != nil {
			b.Fatal(err)
		}
	}
}
