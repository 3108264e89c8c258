package profile_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/profile/profiletest"
)

var codecNow = time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)

// sampleProfile is a profile with every part filled in, behaviour from n generated events.
func sampleProfile(r *rand.Rand, id string, n int) *profile.Profile {
	p := &profile.Profile{
		ID: id,
		CRM: profile.CRM{
			Email: id + "@example.com", FirstName: "Zoë", LastName: "O'Brien", Locale: "de-DE", Timezone: "Europe/Berlin",
			Country: "DE", CreatedAt: codecNow.Add(-400 * 24 * time.Hour), UpdatedAt: codecNow.Add(-time.Hour),
			Attributes: map[string]any{"tier": "gold", "score": 12.5, "tags": []any{"a", "b"}, "nested": map[string]any{"x": true}, "orders": 99.0},
		},
		CRMVersion:    uint64(r.IntN(1 << 40)),
		Subscriptions: map[string]profile.Subscription{"news": {Status: profile.StatusSubscribed, Source: "crm", UpdatedAt: codecNow, Version: 7}},
		Consents:      map[string]profile.Consent{"email_marketing": {Granted: true, Source: "webhook", At: codecNow, Version: 9}},
		UpdatedAt:     codecNow,
	}
	p.Behaviour.Aggregate(profiletest.GenEvents(r, n, 1, codecNow))
	p.Behaviour.Version = 3
	return p
}

func TestCodec_RoundTripsEveryPart(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i, p := range []*profile.Profile{
		sampleProfile(r, "full", 400),
		{ID: "events-only", Subscriptions: map[string]profile.Subscription{}, Consents: map[string]profile.Consent{}, CRM: profile.CRM{Attributes: map[string]any{}}},
		{ID: "erased", ErasedAt: codecNow, Subscriptions: map[string]profile.Subscription{}, Consents: map[string]profile.Consent{}, CRM: profile.CRM{Attributes: map[string]any{}}},
	} {
		item, err := profile.Encode(p)
		require.NoError(t, err)
		back, err := profile.Decode(item)
		require.NoError(t, err, "profile %d", i)
		if p.Behaviour.Version > 0 {
			profiletest.RequireSameFeatures(t, &p.Behaviour, &back.Behaviour, codecNow, p.ID)
		}
		p.Behaviour, back.Behaviour = profile.Features{}, profile.Features{}
		require.Equal(t, p, back, "profile %d", i)
	}
}

func TestCodec_TombstonesAndUnknownAttributesAreNotData(t *testing.T) {
	t.Parallel()
	item := map[string]types.AttributeValue{
		"customer_id": &types.AttributeValueMemberS{Value: "c1"},
		"subscriptions": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			"gone": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
				"lsn": &types.AttributeValueMemberN{Value: "5"}, "deleted": &types.AttributeValueMemberBOOL{Value: true},
			}},
		}},
		"crm_col_loyalty": &types.AttributeValueMemberS{Value: "silver"},
		"attributes": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			"loyalty": &types.AttributeValueMemberS{Value: "bronze"}, "plan": &types.AttributeValueMemberS{Value: "pro"},
		}},
		"something_else": &types.AttributeValueMemberS{Value: "ignored"},
	}
	p, err := profile.Decode(item)
	require.NoError(t, err)
	require.Empty(t, p.Subscriptions, "a tombstone is no subscription")
	require.Equal(t, map[string]any{"loyalty": "silver", "plan": "pro"}, p.CRM.Attributes, "a column wins over the jsonb key")
}

func TestCodec_RefusesAttributesOfTheWrongType(t *testing.T) {
	t.Parallel()
	for attr, v := range map[string]types.AttributeValue{
		"email":      &types.AttributeValueMemberN{Value: "1"},
		"crm_lsn":    &types.AttributeValueMemberS{Value: "x"},
		"created_at": &types.AttributeValueMemberS{Value: "yesterday"},
		"ev_state":   &types.AttributeValueMemberB{Value: []byte{0x01, 0xff, 0x00}},
	} {
		_, err := profile.Decode(map[string]types.AttributeValue{"customer_id": &types.AttributeValueMemberS{Value: "c"}, attr: v})
		require.ErrorIs(t, err, profile.ErrDecode, attr)
		require.ErrorContains(t, err, attr)
	}
}

// itemSize is DynamoDB's item size: attribute names plus values (numbers about half their
// digits, maps and lists 3 bytes plus their elements).
func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for k, v := range item {
		n += len(k) + valueSize(v)
	}
	return n
}

func valueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return len(v.Value)/2 + 2
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberM:
		return 3 + itemSize(v.Value) + len(v.Value)
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += valueSize(e) + 1
		}
		return n
	}
	panic(fmt.Sprintf("unexpected %T", v))
}

func TestCodec_AProfileAtEveryBoundStaysUnder400KB(t *testing.T) {
	t.Parallel()
	now := codecNow
	var f profile.Features
	// More distinct products, categories, sessions, cart events and currencies than any bound.
	var evs []events.Event
	currencies := []string{"EUR", "USD", "GBP", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "AUD", "CAD"}
	// Random text defeats ev_state's compression: the worst case, not a flattering one.
	r := rand.New(rand.NewPCG(9, 9))
	random := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[r.IntN(36)]
		}
		return string(b)
	}
	long := random(events.MaxIDLen - 10)
	// Purchases are older than every add to cart, so the cart stays full.
	for i := range 5000 {
		at := now.Add(-time.Duration(i) * 31 * time.Minute)
		id := fmt.Sprintf("%s-%06d", random(events.MaxIDLen-10), i)
		cat := fmt.Sprintf("%s-%03d", random(250), i%200)
		evs = append(evs,
			events.Event{EventID: "v" + id, CustomerID: "c", Type: events.TypeProductView, Timestamp: at, Properties: events.Properties{ProductID: id, Category: cat}},
			events.Event{EventID: "a" + id, CustomerID: "c", Type: events.TypeAddToCart, Timestamp: at, Properties: events.Properties{ProductID: id, Category: cat, Quantity: 1, PriceMinor: 100, Currency: "EUR"}},
			events.Event{EventID: "p" + id, CustomerID: "c", Type: events.TypePurchase, Timestamp: now.Add(-time.Duration(5000+i) * 24 * time.Hour), Properties: events.Properties{OrderID: id, TotalMinor: 5, Currency: currencies[i%len(currencies)]}},
		)
	}
	for _, typ := range events.Types {
		for i := range 300 {
			at := now.Add(-time.Duration(i) * 2 * time.Hour)
			if typ == events.TypePurchase {
				at = at.Add(-20 * 365 * 24 * time.Hour)
			}
			evs = append(evs, events.Event{EventID: fmt.Sprintf("%s-%s-%d", typ, long, i), CustomerID: "c", Type: typ, Timestamp: at,
				Properties: events.Properties{URL: "u", Query: "q", ProductID: "p", OrderID: "o", Currency: "EUR", CampaignID: "k", Name: "n"}})
		}
	}
	f.Aggregate(evs)
	require.Len(t, f.RecentlyViewed, profile.RecentlyViewedMax)
	require.LessOrEqual(t, len(f.AffinityRaw), profile.AffinityMax)
	require.LessOrEqual(t, len(f.LifetimeValue), profile.CurrenciesMax)
	require.LessOrEqual(t, len(f.SessionSpans), profile.SessionsKeptMax)
	require.LessOrEqual(t, len(f.CartEvents), profile.CartEventsMax)
	require.LessOrEqual(t, len(f.RecentIDs), profile.RecentIDsMax)

	p := &profile.Profile{ID: strings.Repeat("i", events.MaxIDLen), Behaviour: f,
		Subscriptions: map[string]profile.Subscription{}, Consents: map[string]profile.Consent{},
		CRM: profile.CRM{Email: random(320), Attributes: map[string]any{"blob": random(profile.MaxCRMBytes)}}}
	for i := range profile.MaxEntriesPerMap {
		k := fmt.Sprintf("%0*d", profile.MaxEntryKeyLen, i)
		p.Subscriptions[k] = profile.Subscription{Status: profile.StatusUnsubscribed, Source: random(32), UpdatedAt: now, Version: 1 << 40}
		p.Consents[k] = profile.Consent{Granted: true, Source: random(32), At: now, Version: 1 << 40}
	}
	item, err := profile.Encode(p)
	require.NoError(t, err)
	size := itemSize(item)
	js, _ := json.Marshal(&p.Behaviour)
	t.Logf("item at every bound: %d bytes (ev_state %d, %d as JSON; cart events %d)", size, valueSize(item["ev_state"]), len(js), len(p.Behaviour.CartEvents))
	require.Less(t, size, 320_000, "an item at every bound must fit DynamoDB's 400 KB with room to spare")
}

func TestFields_HaveExactlyTheDocumentedNamesAndTypes(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	types := profile.FieldTypes()
	for _, p := range []*profile.Profile{sampleProfile(r, "full", 500), {ID: "empty"}} {
		fields := p.Fields(codecNow)
		require.ElementsMatch(t, profile.FieldNames(), slices.Collect(mapsKeys(fields)), p.ID)
		for name, v := range fields {
			require.Equal(t, reflect.TypeOf(types[name]), reflect.TypeOf(v), "%s: field %s", p.ID, name)
		}
	}
	require.Len(t, types, len(profile.FieldNames()), "field names are unique")
}

func mapsKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestFields_ReadTheTypedModel(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	p := sampleProfile(r, "c-7", 300)
	f := p.Fields(codecNow)
	require.Equal(t, "c-7", f["customer_id"])
	require.Equal(t, "Zoë", f["first_name"])
	require.Equal(t, map[string]string{"news": "subscribed"}, f["subscriptions"])
	require.Equal(t, map[string]bool{"email_marketing": true}, f["consents"])
	require.Equal(t, 99.0, f["attributes"].(map[string]any)["orders"], "a CRM value named orders lives under attributes")
	require.Equal(t, p.Behaviour.Orders, f["orders"], "orders is the behavioural count")
	var total int64
	for _, typ := range events.Types {
		total += f[profile.CountField(typ)].(int64)
	}
	require.Equal(t, int64(300), total, "lifetime counts add up to the events")
	require.Equal(t, p.Behaviour.WindowCount(events.TypeProductView, profile.Window7d, codecNow), f["count_product_view_7d"])
	top := f["top_categories"].([]string)
	aff := f["category_affinity"].(map[string]float64)
	require.NotEmpty(t, top)
	for i := 1; i < len(top); i++ {
		require.GreaterOrEqual(t, aff[top[i-1]], aff[top[i]], "top categories are sorted by affinity")
	}
	// The view is a copy: changing it leaves the profile alone.
	f["attributes"].(map[string]any)["tier"] = "changed"
	require.Equal(t, "gold", p.CRM.Attributes["tier"])
}

func TestColumnAttribute_KeepsCRMColumnsInTheirNamespace(t *testing.T) {
	t.Parallel()
	for col, want := range map[string]string{
		"email": "email", "updated_at": "crm_updated_at", "id": "", "attributes": "attributes",
		"orders": "crm_col_orders", "ev_state": "crm_col_ev_state", "count_purchase": "crm_col_count_purchase", "crm_lsn": "crm_col_crm_lsn",
	} {
		require.Equal(t, want, profile.ColumnAttribute(col), col)
	}
}

func TestErrWriteRefused_IsForGoodOnly(t *testing.T) {
	t.Parallel()
	require.True(t, errors.Is(profile.RefusedForTest("ValidationException", "Item size has exceeded the maximum allowed size"), profile.ErrWriteRefused))
	require.True(t, errors.Is(profile.RefusedForTest("ValidationException", "Item size to update has exceeded the maximum allowed size"), profile.ErrWriteRefused))
	require.False(t, errors.Is(profile.RefusedForTest("ValidationException", "Invalid UpdateExpression: Syntax error; token: \"SET\""), profile.ErrWriteRefused),
		"an expression bug must fail loudly, not be dead-lettered")
	require.False(t, errors.Is(profile.RefusedForTest("ProvisionedThroughputExceededException", "slow down"), profile.ErrWriteRefused))
	require.True(t, errors.Is(profile.RefusedForTest("ValidationException", "Nesting Levels have exceeded supported limits"), profile.ErrWriteRefused))
	require.True(t, errors.Is(profile.RefusedForTest("ValidationException", "Number overflow. Attempting to store a number with magnitude larger than supported range"), profile.ErrWriteRefused))
	require.False(t, errors.Is(profile.RefusedForTest("ValidationException", "ExpressionAttributeNames contains invalid key"), profile.ErrWriteRefused))
}

func TestCodec_AttributeNamesAreUniqueAndOutsideTheColumnNamespace(t *testing.T) {
	t.Parallel()
	names := profile.StoredAttributesForTest()
	require.Len(t, slices.Compact(slices.Clone(names)), len(names), "unique")
	for _, n := range names {
		if n != "crm_col_" {
			require.False(t, strings.HasPrefix(n, "crm_col_"), n)
		}
		require.Equal(t, n, strings.TrimSpace(n))
	}
	for col := range map[string]bool{"email": true, "first_name": true, "updated_at": true, "attributes": true} {
		require.Contains(t, names, profile.ColumnAttribute(col))
	}
}

func TestCodec_VersionsAboveTwoToThe53AreExact(t *testing.T) {
	t.Parallel()
	const v = uint64(1<<60 + 1) // float64 would round it
	p := &profile.Profile{ID: "v", CRMVersion: v,
		Subscriptions: map[string]profile.Subscription{"t": {Status: "subscribed", Version: v}},
		Consents:      map[string]profile.Consent{"p": {Granted: true, Version: v + 2}}}
	item, err := profile.Encode(p)
	require.NoError(t, err)
	back, err := profile.Decode(item)
	require.NoError(t, err)
	require.Equal(t, v, back.CRMVersion)
	require.Equal(t, v, back.Subscriptions["t"].Version)
	require.Equal(t, v+2, back.Consents["p"].Version)
}

// The attributes decoder without reflection makes of every kind of attribute value what the
// SDK's attributevalue.Unmarshal into an `any` makes of it.
func TestAnyOf_AgreesWithAttributeValueUnmarshal(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	var gen func(depth int) types.AttributeValue
	gen = func(depth int) types.AttributeValue {
		k := r.IntN(10)
		if depth > 3 && k >= 8 {
			k = r.IntN(8)
		}
		switch k {
		case 0:
			return &types.AttributeValueMemberS{Value: fmt.Sprint("s", r.IntN(100))}
		case 1:
			return &types.AttributeValueMemberN{Value: fmt.Sprint(r.IntN(1e6)-5e5, ".", r.IntN(100))}
		case 2:
			return &types.AttributeValueMemberBOOL{Value: r.IntN(2) == 0}
		case 3:
			return &types.AttributeValueMemberNULL{Value: true}
		case 4:
			return &types.AttributeValueMemberB{Value: []byte{byte(r.IntN(256)), 1, 2}}
		case 5:
			return &types.AttributeValueMemberSS{Value: []string{"a", fmt.Sprint(r.IntN(9))}}
		case 6:
			return &types.AttributeValueMemberNS{Value: []string{"1", "2.5", "-3e2"}}
		case 7:
			return &types.AttributeValueMemberBS{Value: [][]byte{{1}, {2, 3}}}
		case 8:
			l := make([]types.AttributeValue, r.IntN(4))
			for i := range l {
				l[i] = gen(depth + 1)
			}
			return &types.AttributeValueMemberL{Value: l}
		}
		m := map[string]types.AttributeValue{}
		for i := range r.IntN(4) {
			m[fmt.Sprint("k", i)] = gen(depth + 1)
		}
		return &types.AttributeValueMemberM{Value: m}
	}
	for i := range 2000 {
		av := gen(0)
		var want any
		require.NoError(t, attributevalue.Unmarshal(av, &want))
		got, err := profile.AnyOfForTest(av)
		require.NoError(t, err)
		require.Equal(t, want, got, "value %d", i)
	}
	_, err := profile.AnyOfForTest(&types.AttributeValueMemberN{Value: "twelve"})
	require.Error(t, err)
}
