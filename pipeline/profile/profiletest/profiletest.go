package profiletest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// Truth is a profile computed independently of profile.Features, straight from the unique events.
type Truth struct {
	counts         map[string]int64
	windows        map[string]map[time.Duration]int64
	firstSeen      time.Time
	lastSeen       time.Time
	sessions       int64
	recentlyViewed []profile.ViewedProduct
	cart           []profile.CartLine
	orders         int64
	ltv            map[string]int64
	lastPurchase   *profile.Purchase
	affinity       map[string]float64
}

var testWindows = []time.Duration{profile.Window1h, profile.Window24h, profile.Window7d, profile.Window30d}

// GroundTruth computes what a profile must hold for events (duplicates by id are ignored).
func GroundTruth(all []events.Event, now time.Time) Truth {
	uniq := map[string]events.Event{}
	for _, e := range all {
		if _, ok := uniq[e.EventID]; !ok {
			uniq[e.EventID] = e
		}
	}
	evs := make([]events.Event, 0, len(uniq))
	for _, e := range uniq {
		evs = append(evs, e)
	}
	slices.SortFunc(evs, func(a, b events.Event) int {
		return cmp.Or(a.Timestamp.Compare(b.Timestamp), cmp.Compare(a.EventID, b.EventID))
	})
	tr := Truth{counts: map[string]int64{}, windows: map[string]map[time.Duration]int64{}, ltv: map[string]int64{}, affinity: map[string]float64{}}
	sizes := map[time.Duration]time.Duration{profile.Window1h: 5 * time.Minute, profile.Window24h: time.Hour, profile.Window7d: 24 * time.Hour, profile.Window30d: 24 * time.Hour}
	lastView := map[string]profile.ViewedProduct{}
	var lastPurchaseAt time.Time
	for i, e := range evs {
		tr.counts[e.Type]++
		if tr.windows[e.Type] == nil {
			tr.windows[e.Type] = map[time.Duration]int64{}
		}
		for _, w := range testWindows {
			size := sizes[w]
			b, nb := e.Timestamp.Truncate(size), now.Truncate(size)
			if !b.After(nb) && b.After(nb.Add(-w)) {
				tr.windows[e.Type][w]++
			}
		}
		if i == 0 {
			tr.firstSeen = e.Timestamp
			tr.sessions = 1
		} else if e.Timestamp.Sub(evs[i-1].Timestamp) > profile.SessionGap {
			tr.sessions++
		}
		tr.lastSeen = e.Timestamp
		decayed := func(w float64) float64 {
			return w * math.Exp2(-now.Sub(e.Timestamp).Hours()/profile.AffinityHalfLife.Hours())
		}
		p := e.Properties
		switch e.Type {
		case events.TypeProductView:
			if v, ok := lastView[p.ProductID]; !ok || e.Timestamp.After(v.At) {
				lastView[p.ProductID] = profile.ViewedProduct{ProductID: p.ProductID, Category: p.Category, At: e.Timestamp}
			}
			if p.Category != "" {
				tr.affinity[p.Category] += decayed(1)
			}
		case events.TypeAddToCart:
			if p.Category != "" {
				tr.affinity[p.Category] += decayed(3)
			}
		case events.TypePurchase:
			tr.orders++
			tr.ltv[p.Currency] += p.TotalMinor
			tr.lastPurchase = &profile.Purchase{OrderID: p.OrderID, At: e.Timestamp, TotalMinor: p.TotalMinor, Currency: p.Currency}
			lastPurchaseAt = e.Timestamp
			for _, it := range p.Items {
				if it.Category != "" {
					tr.affinity[it.Category] += decayed(5)
				}
			}
		}
	}
	// Cart: replay adds and removes after the last purchase, in time order.
	qty := map[string]*profile.CartLine{}
	for _, e := range evs {
		if !e.Timestamp.After(lastPurchaseAt) || (e.Type != events.TypeAddToCart && e.Type != events.TypeRemoveFromCart) {
			continue
		}
		p := e.Properties
		l := qty[p.ProductID]
		if l == nil {
			l = &profile.CartLine{ProductID: p.ProductID}
			qty[p.ProductID] = l
		}
		switch {
		case e.Type == events.TypeAddToCart:
			l.Quantity += max(p.Quantity, 1)
			l.Category = cmp.Or(p.Category, l.Category)
			if p.PriceMinor != 0 {
				l.PriceMinor, l.Currency = p.PriceMinor, p.Currency
			}
		case p.Quantity > 0:
			l.Quantity = max(l.Quantity-p.Quantity, 0)
		default:
			l.Quantity = 0
		}
	}
	for _, l := range qty {
		if l.Quantity > 0 {
			tr.cart = append(tr.cart, *l)
		}
	}
	slices.SortFunc(tr.cart, func(a, b profile.CartLine) int { return cmp.Compare(a.ProductID, b.ProductID) })
	for _, v := range lastView {
		tr.recentlyViewed = append(tr.recentlyViewed, v)
	}
	slices.SortFunc(tr.recentlyViewed, func(a, b profile.ViewedProduct) int {
		return cmp.Or(b.At.Compare(a.At), cmp.Compare(a.ProductID, b.ProductID))
	})
	if len(tr.recentlyViewed) > profile.RecentlyViewedMax {
		tr.recentlyViewed = tr.recentlyViewed[:profile.RecentlyViewedMax]
	}
	return tr
}

// RequireMatchesTruth compares profile.Features (read at now) with the ground Truth.
func RequireMatchesTruth(t testing.TB, f *profile.Features, tr Truth, now time.Time, who string) {
	t.Helper()
	counts := f.Counts
	if counts == nil {
		counts = map[string]int64{}
	}
	require.Equal(t, tr.counts, counts, "%s: lifetime counts", who)
	for typ, ws := range tr.windows {
		for _, w := range testWindows {
			require.Equal(t, ws[w], f.WindowCount(typ, w, now), "%s: %s count in %s", who, typ, w)
		}
	}
	require.True(t, tr.firstSeen.Equal(f.FirstSeen), "%s: first seen %s, want %s", who, f.FirstSeen, tr.firstSeen)
	require.True(t, tr.lastSeen.Equal(f.LastSeen), "%s: last seen %s, want %s", who, f.LastSeen, tr.lastSeen)
	require.Equal(t, tr.sessions, f.Sessions(), "%s: sessions", who)
	require.Equal(t, len(tr.recentlyViewed), len(f.RecentlyViewed), "%s: recently viewed", who)
	for i, v := range tr.recentlyViewed {
		got := f.RecentlyViewed[i]
		require.True(t, v.ProductID == got.ProductID && v.Category == got.Category && v.At.Equal(got.At), "%s: recently viewed[%d] = %+v, want %+v", who, i, got, v)
	}
	require.Equal(t, tr.cart, nilIfEmpty(f.Cart()), "%s: cart", who)
	require.Equal(t, tr.orders, f.Orders, "%s: orders", who)
	ltv := f.LifetimeValue
	if ltv == nil {
		ltv = map[string]int64{}
	}
	require.Equal(t, tr.ltv, ltv, "%s: lifetime value", who)
	if tr.lastPurchase == nil {
		require.Nil(t, f.LastPurchase, "%s: last purchase", who)
	} else {
		require.NotNil(t, f.LastPurchase, "%s: last purchase", who)
		require.True(t, tr.lastPurchase.At.Equal(f.LastPurchase.At), "%s: last purchase at", who)
		require.Equal(t, tr.lastPurchase.TotalMinor, f.LastPurchase.TotalMinor, "%s: last purchase total", who)
	}
	aff := f.Affinity(now)
	require.Len(t, aff, len(tr.affinity), "%s: affinity categories", who)
	for c, want := range tr.affinity {
		require.InEpsilon(t, want, aff[c], 1e-6, "%s: affinity of %s", who, c)
	}
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// GenEvents makes n events for customers, spread over the last 40 days with clusters (sessions),
// some cart activity and purchases; every event id is unique.
func GenEvents(r *rand.Rand, n, customers int, now time.Time) []events.Event {
	cats := []string{"shoes", "hats", "bags", "coats", "socks"}
	evs := make([]events.Event, 0, n)
	for i := range n {
		c := fmt.Sprintf("cust-%03d", r.IntN(customers))
		// Mostly recent, some older than 30 days; minute-level jitter makes sessions.
		age := time.Duration(r.ExpFloat64()*float64(3*24*time.Hour)) + time.Duration(r.IntN(90))*time.Minute
		at := now.Add(-age).Truncate(time.Millisecond).UTC()
		e := events.Event{EventID: fmt.Sprintf("ev-%06d", i), CustomerID: c, Timestamp: at}
		prod := fmt.Sprintf("prod-%02d", r.IntN(40))
		cat := cats[r.IntN(len(cats))]
		switch k := r.IntN(100); {
		case k < 40:
			e.Type, e.Properties = events.TypeProductView, events.Properties{ProductID: prod, Category: cat, PriceMinor: int64(100 + r.IntN(9000)), Currency: "EUR"}
		case k < 50:
			e.Type, e.Properties = events.TypePageView, events.Properties{URL: "https://shop.example/" + prod}
		case k < 58:
			e.Type, e.Properties = events.TypeSearch, events.Properties{Query: cat}
		case k < 70:
			e.Type, e.Properties = events.TypeAddToCart, events.Properties{ProductID: prod, Category: cat, Quantity: int64(1 + r.IntN(3)), PriceMinor: 1999, Currency: "EUR"}
		case k < 76:
			e.Type, e.Properties = events.TypeRemoveFromCart, events.Properties{ProductID: prod, Quantity: int64(r.IntN(2))}
		case k < 82:
			e.Type, e.Properties = events.TypePurchase, events.Properties{OrderID: "o-" + e.EventID, TotalMinor: int64(500 + r.IntN(20000)), Currency: []string{"EUR", "USD"}[r.IntN(2)],
				Items: []events.Item{{ProductID: prod, Category: cat, Quantity: 1}}}
		case k < 90:
			e.Type, e.Properties = events.TypeEmailOpen, events.Properties{CampaignID: "camp-1"}
		case k < 96:
			e.Type, e.Properties = events.TypeEmailClick, events.Properties{CampaignID: "camp-1", URL: "https://shop.example"}
		default:
			e.Type, e.Properties = events.TypeCustom, events.Properties{Name: "wishlist"}
		}
		evs = append(evs, e)
	}
	return evs
}

func ByCustomer(evs []events.Event) map[string][]events.Event {
	out := map[string][]events.Event{}
	for _, e := range evs {
		out[e.ProfileID()] = append(out[e.ProfileID()], e)
	}
	return out
}

// ProductView is a product_view event of customer at the given time.
func ProductView(id, customer string, at time.Time) events.Event {
	return events.Event{EventID: id, CustomerID: customer, Type: events.TypeProductView, Timestamp: at.UTC(), Properties: events.Properties{ProductID: "p-" + id}}
}

// RequireSameFeatures fails unless got holds exactly what want holds: the same version and
// the same stored state (compared as their JSON encoding), and the same view as of now.
func RequireSameFeatures(t testing.TB, want, got *profile.Features, now time.Time, who string) {
	t.Helper()
	require.Equal(t, want.Version, got.Version, "%s: version", who)
	w, err := json.Marshal(want)
	require.NoError(t, err)
	g, err := json.Marshal(got)
	require.NoError(t, err)
	require.JSONEq(t, string(w), string(g), "%s: features", who)
	require.Equal(t, (&profile.Profile{Behaviour: *want}).Fields(now), (&profile.Profile{Behaviour: *got}).Fields(now), "%s: view", who)
}
