package profile

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tailor-email/tailor/pipeline/events"
)

// Field sources, for the reference table.
const (
	SourceKey       = "key"
	SourceCRM       = "crm (customers)"
	SourcePrefs     = "crm (subscriptions, consents)"
	SourceEvents    = "events"
	SourceEventsNow = "events, as of now"
)

// FieldSpec describes one field of the read view: its name, Go type, where it comes from, an
// example and what it means.
type FieldSpec struct {
	Name    string
	Type    string
	Source  string
	Example string
	Doc     string
	zero    any // a value of the field's type: the segment compiler's environment
}

// countWindows are the windows of count_<type>_<window>.
var countWindows = []struct {
	suffix string
	window time.Duration
}{{"1h", Window1h}, {"24h", Window24h}, {"7d", Window7d}, {"30d", Window30d}}

// TopCategoriesMax bounds top_categories.
const TopCategoriesMax = 5

var fieldSpecs = sync.OnceValue(func() []FieldSpec {
	specs := []FieldSpec{
		{"customer_id", "string", SourceKey, `"c-1042"`, "the customer id (customers.id)", ""},
		{"email", "string", SourceCRM, `"ada@example.com"`, "the address; empty when there is no customers row", ""},
		{"first_name", "string", SourceCRM, `"Ada"`, "customers.first_name", ""},
		{"last_name", "string", SourceCRM, `"Lovelace"`, "customers.last_name", ""},
		{"locale", "string", SourceCRM, `"de-DE"`, "BCP 47; money and dates are formatted by it", ""},
		{"timezone", "string", SourceCRM, `"Europe/Berlin"`, "IANA time zone", ""},
		{"country", "string", SourceCRM, `"DE"`, "customers.country, as the CRM stores it", ""},
		{"created_at", "time", SourceCRM, "2026-01-02T15:04:05Z", "customers.created_at", time.Time{}},
		{"crm_updated_at", "time", SourceCRM, "2026-11-20T08:00:00Z", "customers.updated_at", time.Time{}},
		{"attributes", "map[string]any", SourceCRM, `attributes.tier == "gold"`, "the attributes jsonb and every other customers column (a column wins over a key of the same name)", map[string]any{}},
		{"subscriptions", "map[string]string", SourcePrefs, `subscriptions.newsletter == "subscribed"`, "topic -> status (subscribed, unsubscribed, pending)", map[string]string{}},
		{"consents", "map[string]bool", SourcePrefs, `consents.email_marketing`, "purpose -> granted", map[string]bool{}},
		{"first_seen", "time", SourceEvents, "2026-10-01T09:00:00Z", "the first event", time.Time{}},
		{"last_seen", "time", SourceEvents, "2026-11-22T09:30:00Z", "the latest event", time.Time{}},
		{"sessions", "int", SourceEvents, "12", "runs of events without 30 minutes of inactivity", int64(0)},
		{"orders", "int", SourceEvents, "3", "purchases", int64(0)},
		{"lifetime_value", "map[string]int", SourceEvents, `lifetime_value.EUR > 10000`, "currency -> total purchases in minor units", map[string]int64{}},
		{"last_purchase", "map[string]any", SourceEvents, `last_purchase.total`, "{order_id, at, total (minor units), currency}; empty without a purchase", map[string]any{}},
		{"recently_viewed", "[]map[string]any", SourceEvents, `recently_viewed[0].product_id`, fmt.Sprintf("up to %d distinct products, newest first: {product_id, category, at}", RecentlyViewedMax), []map[string]any{}},
		{"cart", "[]map[string]any", SourceEvents, `len(cart) > 0`, "the current cart: {product_id, category, quantity, price (minor units), currency}", []map[string]any{}},
		{"cart_value", "map[string]int", SourceEvents, `cart_value.EUR`, "currency -> value of the cart in minor units (lines with a price)", map[string]int64{}},
		{"category_affinity", "map[string]float", SourceEventsNow, `category_affinity.shoes > 2`, "category -> score: view 1, add to cart 3, purchase 5, halving every 7 days", map[string]float64{}},
		{"top_categories", "[]string", SourceEventsNow, `"shoes" in top_categories`, fmt.Sprintf("up to %d categories by affinity, highest first", TopCategoriesMax), []string{}},
		{"email_opens_30d", "int", SourceEventsNow, "4", "email_open events in the last 30 days", int64(0)},
		{"email_clicks_30d", "int", SourceEventsNow, "1", "email_click events in the last 30 days", int64(0)},
	}
	for _, typ := range events.Types {
		specs = append(specs, FieldSpec{CountField(typ), "int", SourceEvents, "7", typ + " events, ever", int64(0)})
		for _, w := range countWindows {
			specs = append(specs, FieldSpec{CountField(typ) + "_" + w.suffix, "int", SourceEventsNow, "2", typ + " events in the last " + w.suffix, int64(0)})
		}
	}
	for i := range specs {
		if specs[i].zero == nil {
			specs[i].zero = ""
		}
	}
	return specs
})

// CountField names the lifetime count of an event type: count_<type>.
func CountField(typ string) string { return "count_" + typ }

// FieldSpecs lists every field of the read view, in a stable order.
func FieldSpecs() []FieldSpec { return slices.Clone(fieldSpecs()) }

// FieldNames lists the view's field names, in FieldSpecs order.
func FieldNames() []string {
	specs := fieldSpecs()
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// FieldTypes returns a map with every field of the view set to a zero value of its type: the
// environment segments are type-checked against (expr-lang infers each name's type from it).
func FieldTypes() map[string]any {
	specs := fieldSpecs()
	out := make(map[string]any, len(specs))
	for _, s := range specs {
		out[s.Name] = s.zero
	}
	return out
}

// Fields is the one read view of a profile that segments (as the expression environment) and
// templates (as customer.*) share. It has exactly the fields of FieldSpecs, each with its
// documented type, absent data as the type's zero value (empty string, 0, the zero time, empty
// map or list); time-dependent features (windowed counts, affinity, 30-day engagement) are
// computed as of now. The result is a fresh map the caller may modify.
func (p *Profile) Fields(now time.Time) map[string]any {
	f := &p.Behaviour
	c := p.CRM
	// A copy of every field at its zero value, then what the profile has: a clone copies the
	// table without hashing a key, where ~100 inserts per recipient cost a campaign ~5 µs each.
	out := maps.Clone(fieldsBase())
	out["customer_id"] = p.ID
	out["email"], out["first_name"], out["last_name"] = c.Email, c.FirstName, c.LastName
	out["locale"], out["timezone"], out["country"] = c.Locale, c.Timezone, c.Country
	out["created_at"], out["crm_updated_at"] = c.CreatedAt, c.UpdatedAt
	attrs := make(map[string]any, len(c.Attributes))
	maps.Copy(attrs, c.Attributes)
	out["attributes"] = attrs
	subs := make(map[string]string, len(p.Subscriptions))
	for k, s := range p.Subscriptions {
		subs[k] = s.Status
	}
	out["subscriptions"] = subs
	cons := make(map[string]bool, len(p.Consents))
	for k, v := range p.Consents {
		cons[k] = v.Granted
	}
	out["consents"] = cons

	out["first_seen"], out["last_seen"] = f.FirstSeen, f.LastSeen
	out["sessions"], out["orders"] = f.Sessions(), f.Orders
	ltv := make(map[string]int64, len(f.LifetimeValue))
	maps.Copy(ltv, f.LifetimeValue)
	out["lifetime_value"] = ltv
	lp := map[string]any{}
	if f.LastPurchase != nil {
		lp = map[string]any{"order_id": f.LastPurchase.OrderID, "at": f.LastPurchase.At, "total": f.LastPurchase.TotalMinor, "currency": f.LastPurchase.Currency}
	}
	out["last_purchase"] = lp
	viewed := make([]map[string]any, len(f.RecentlyViewed))
	for i, v := range f.RecentlyViewed {
		viewed[i] = map[string]any{"product_id": v.ProductID, "category": v.Category, "at": v.At}
	}
	out["recently_viewed"] = viewed
	lines := f.Cart()
	cart := make([]map[string]any, len(lines))
	value := map[string]int64{}
	for i, l := range lines {
		cart[i] = map[string]any{"product_id": l.ProductID, "category": l.Category, "quantity": l.Quantity, "price": l.PriceMinor, "currency": l.Currency}
		if l.PriceMinor > 0 && l.Currency != "" {
			value[l.Currency] += l.PriceMinor * l.Quantity
		}
	}
	out["cart"], out["cart_value"] = cart, value
	aff := f.Affinity(now)
	out["category_affinity"] = aff
	out["top_categories"] = topCategories(aff)
	out["email_opens_30d"] = f.WindowCount(events.TypeEmailOpen, Window30d, now)
	out["email_clicks_30d"] = f.WindowCount(events.TypeEmailClick, Window30d, now)
	names := countFieldNames()
	for i, typ := range events.Types {
		if f.Counts[typ] == 0 && !f.hasBuckets(typ) {
			continue // no event of the type: its counts stay the zeros of fieldsBase
		}
		out[names[i][0]] = f.Counts[typ]
		for j, w := range countWindows {
			out[names[i][j+1]] = f.WindowCount(typ, w.window, now)
		}
	}
	return out
}

// fieldsBase has every field of the view: the zero value of its type where that value is
// immutable (numbers, strings, times), nil where Fields always sets a fresh one (maps, lists).
// Fields clones it, so no value in it may ever be something a caller could modify.
var fieldsBase = sync.OnceValue(func() map[string]any {
	specs := fieldSpecs()
	out := make(map[string]any, len(specs))
	for _, s := range specs {
		switch s.zero.(type) {
		case int64, float64, string, bool, time.Time:
			out[s.Name] = s.zero
		default:
			out[s.Name] = nil
		}
	}
	return out
})

// countFieldNames holds, per event type of events.Types, count_<type> and its windowed names
// in countWindows order, built once (Fields runs once per recipient of every campaign).
var countFieldNames = sync.OnceValue(func() [][]string {
	out := make([][]string, len(events.Types))
	for i, typ := range events.Types {
		out[i] = []string{CountField(typ)}
		for _, w := range countWindows {
			out[i] = append(out[i], CountField(typ)+"_"+w.suffix)
		}
	}
	return out
})

func topCategories(aff map[string]float64) []string {
	cats := slices.Collect(maps.Keys(aff))
	slices.SortFunc(cats, func(a, b string) int {
		return cmp.Or(cmp.Compare(aff[b], aff[a]), cmp.Compare(a, b))
	})
	return cats[:min(len(cats), TopCategoriesMax)]
}

// FieldReference is the Markdown table of every field (name, type, source, example, meaning)
// that the README carries, generated so it cannot drift from the code. Windowed counts are
// summarised in one row per window.
func FieldReference() string {
	var b strings.Builder
	b.WriteString("| field | type | source | example | meaning |\n| --- | --- | --- | --- | --- |\n")
	row := func(s FieldSpec) {
		fmt.Fprintf(&b, "| `%s` | %s | %s | `%s` | %s |\n", s.Name, s.Type, s.Source, s.Example, s.Doc)
	}
	for _, s := range fieldSpecs() {
		if !strings.HasPrefix(s.Name, "count_") {
			row(s)
		}
	}
	row(FieldSpec{Name: "count_<type>", Type: "int", Source: SourceEvents, Example: "count_product_view >= 3",
		Doc: "events of that type, ever; types: " + strings.Join(events.Types, ", ")})
	for _, w := range countWindows {
		row(FieldSpec{Name: "count_<type>_" + w.suffix, Type: "int", Source: SourceEventsNow, Example: "count_add_to_cart_" + w.suffix + " > 0",
			Doc: "events of that type in the last " + w.suffix})
	}
	return b.String()
}
