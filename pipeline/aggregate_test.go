package pipeline

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
)

// truth is a profile computed independently of Features, straight from the unique events.
type truth struct {
	counts         map[string]int64
	windows        map[string]map[time.Duration]int64
	firstSeen      time.Time
	lastSeen       time.Time
	sessions       int64
	recentlyViewed []ViewedProduct
	cart           []CartLine
	orders         int64
	ltv            map[string]int64
	lastPurchase   *Purchase
	affinity       map[string]float64
}

var testWindows = []time.Duration{Window1h, Window24h, Window7d, Window30d}

// groundTruth computes what a profile must hold for events (duplicates by id are ignored).
func groundTruth(events []Event, now time.Time) truth {
	uniq := map[string]Event{}
	for _, e := range events {
		if _, ok := uniq[e.EventID]; !ok {
			uniq[e.EventID] = e
		}
	}
	evs := make([]Event, 0, len(uniq))
	for _, e := range uniq {
		evs = append(evs, e)
	}
	slices.SortFunc(evs, func(a, b Event) int {
		return cmp.Or(a.Timestamp.Compare(b.Timestamp), cmp.Compare(a.EventID, b.EventID))
	})
	tr := truth{counts: map[string]int64{}, windows: map[string]map[time.Duration]int64{}, ltv: map[string]int64{}, affinity: map[string]float64{}}
	sizes := map[time.Duration]time.Duration{Window1h: 5 * time.Minute, Window24h: time.Hour, Window7d: 24 * time.Hour, Window30d: 24 * time.Hour}
	lastView := map[string]ViewedProduct{}
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
		} else if e.Timestamp.Sub(evs[i-1].Timestamp) > SessionGap {
			tr.sessions++
		}
		tr.lastSeen = e.Timestamp
		decayed := func(w float64) float64 { return w * math.Exp2(-now.Sub(e.Timestamp).Hours()/AffinityHalfLife.Hours()) }
		p := e.Properties
		switch e.Type {
		case TypeProductView:
			if v, ok := lastView[p.ProductID]; !ok || e.Timestamp.After(v.At) {
				lastView[p.ProductID] = ViewedProduct{ProductID: p.ProductID, Category: p.Category, At: e.Timestamp}
			}
			if p.Category != "" {
				tr.affinity[p.Category] += decayed(1)
			}
		case TypeAddToCart:
			if p.Category != "" {
				tr.affinity[p.Category] += decayed(3)
			}
		case TypePurchase:
			tr.orders++
			tr.ltv[p.Currency] += p.TotalMinor
			tr.lastPurchase = &Purchase{OrderID: p.OrderID, At: e.Timestamp, TotalMinor: p.TotalMinor, Currency: p.Currency}
			lastPurchaseAt = e.Timestamp
			for _, it := range p.Items {
				if it.Category != "" {
					tr.affinity[it.Category] += decayed(5)
				}
			}
		}
	}
	// Cart: replay adds and removes after the last purchase, in time order.
	qty := map[string]*CartLine{}
	for _, e := range evs {
		if !e.Timestamp.After(lastPurchaseAt) || (e.Type != TypeAddToCart && e.Type != TypeRemoveFromCart) {
			continue
		}
		p := e.Properties
		l := qty[p.ProductID]
		if l == nil {
			l = &CartLine{ProductID: p.ProductID}
			qty[p.ProductID] = l
		}
		switch {
		case e.Type == TypeAddToCart:
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
	slices.SortFunc(tr.cart, func(a, b CartLine) int { return cmp.Compare(a.ProductID, b.ProductID) })
	for _, v := range lastView {
		tr.recentlyViewed = append(tr.recentlyViewed, v)
	}
	slices.SortFunc(tr.recentlyViewed, func(a, b ViewedProduct) int {
		return cmp.Or(b.At.Compare(a.At), cmp.Compare(a.ProductID, b.ProductID))
	})
	if len(tr.recentlyViewed) > RecentlyViewedMax {
		tr.recentlyViewed = tr.recentlyViewed[:RecentlyViewedMax]
	}
	return tr
}

// requireMatchesTruth compares Features (read at now) with the ground truth.
func requireMatchesTruth(t testing.TB, f *Features, tr truth, now time.Time, who string) {
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

// genEvents makes n events for customers, spread over the last 40 days with clusters (sessions),
// some cart activity and purchases; every event id is unique.
func genEvents(r *rand.Rand, n, customers int, now time.Time) []Event {
	cats := []string{"shoes", "hats", "bags", "coats", "socks"}
	events := make([]Event, 0, n)
	for i := range n {
		c := fmt.Sprintf("cust-%03d", r.IntN(customers))
		// Mostly recent, some older than 30 days; minute-level jitter makes sessions.
		age := time.Duration(r.ExpFloat64()*float64(3*24*time.Hour)) + time.Duration(r.IntN(90))*time.Minute
		at := now.Add(-age).Truncate(time.Millisecond).UTC()
		e := Event{EventID: fmt.Sprintf("ev-%06d", i), CustomerID: c, Timestamp: at}
		prod := fmt.Sprintf("prod-%02d", r.IntN(40))
		cat := cats[r.IntN(len(cats))]
		switch k := r.IntN(100); {
		case k < 40:
			e.Type, e.Properties = TypeProductView, Properties{ProductID: prod, Category: cat, PriceMinor: int64(100 + r.IntN(9000)), Currency: "EUR"}
		case k < 50:
			e.Type, e.Properties = TypePageView, Properties{URL: "https://shop.example/" + prod}
		case k < 58:
			e.Type, e.Properties = TypeSearch, Properties{Query: cat}
		case k < 70:
			e.Type, e.Properties = TypeAddToCart, Properties{ProductID: prod, Category: cat, Quantity: int64(1 + r.IntN(3)), PriceMinor: 1999, Currency: "EUR"}
		case k < 76:
			e.Type, e.Properties = TypeRemoveFromCart, Properties{ProductID: prod, Quantity: int64(r.IntN(2))}
		case k < 82:
			e.Type, e.Properties = TypePurchase, Properties{OrderID: "o-" + e.EventID, TotalMinor: int64(500 + r.IntN(20000)), Currency: []string{"EUR", "USD"}[r.IntN(2)],
				Items: []Item{{ProductID: prod, Category: cat, Quantity: 1}}}
		case k < 90:
			e.Type, e.Properties = TypeEmailOpen, Properties{CampaignID: "camp-1"}
		case k < 96:
			e.Type, e.Properties = TypeEmailClick, Properties{CampaignID: "camp-1", URL: "https://shop.example"}
		default:
			e.Type, e.Properties = TypeCustom, Properties{Name: "wishlist"}
		}
		events = append(events, e)
	}
	return events
}

func byCustomer(events []Event) map[string][]Event {
	out := map[string][]Event{}
	for _, e := range events {
		out[e.ProfileID()] = append(out[e.ProfileID()], e)
	}
	return out
}

func TestFeatures_MatchGroundTruthInAnyOrderWithDuplicates(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 34, 56, 0, time.UTC)
	r := rand.New(rand.NewPCG(1, 2))
	events := genEvents(r, 3000, 20, now)
	for id, evs := range byCustomer(events) {
		tr := groundTruth(evs, now)
		// In order, in one batch.
		inOrder := slices.Clone(evs)
		slices.SortFunc(inOrder, func(a, b Event) int { return a.Timestamp.Compare(b.Timestamp) })
		var f1 Features
		require.Equal(t, len(evs), f1.Aggregate(inOrder))
		requireMatchesTruth(t, &f1, tr, now, id+" in order")

		// Shuffled, with duplicates, in small batches.
		shuffled := append(slices.Clone(evs), evs[:len(evs)/3]...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		var f2 Features
		applied := 0
		for chunk := range slices.Chunk(shuffled, 7) {
			applied += f2.Aggregate(chunk)
		}
		require.Equal(t, len(evs), applied, "%s: duplicates must not count", id)
		requireMatchesTruth(t, &f2, tr, now, id+" shuffled")
	}
}

func TestFeatures_WindowsFollowTheClock(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	var f Features
	f.Aggregate([]Event{
		productView("a", "c", now.Add(-10*time.Minute)),
		productView("b", "c", now.Add(-3*time.Hour)),
		productView("c", "c", now.Add(-3*24*time.Hour)),
		productView("d", "c", now.Add(-20*24*time.Hour)),
	})
	require.Equal(t, int64(1), f.WindowCount(TypeProductView, Window1h, now))
	require.Equal(t, int64(2), f.WindowCount(TypeProductView, Window24h, now))
	require.Equal(t, int64(3), f.WindowCount(TypeProductView, Window7d, now))
	require.Equal(t, int64(4), f.WindowCount(TypeProductView, Window30d, now))
	later := now.Add(2 * time.Hour)
	require.Equal(t, int64(0), f.WindowCount(TypeProductView, Window1h, later), "1 h window empties as time passes")
	require.Equal(t, int64(2), f.WindowCount(TypeProductView, Window24h, later))
	muchLater := now.Add(15 * 24 * time.Hour)
	require.Equal(t, int64(0), f.WindowCount(TypeProductView, Window7d, muchLater))
	require.Equal(t, int64(3), f.WindowCount(TypeProductView, Window30d, muchLater), "the view 35 days old left the 30 d window")
	require.Equal(t, int64(4), f.Counts[TypeProductView], "lifetime counts never decay")
	fields := f.SegmentFields(later)
	require.Equal(t, int64(0), fields["count_product_view_1h"])
	require.Equal(t, int64(2), fields["count_product_view_24h"])
	require.Equal(t, int64(3), fields["count_product_view_7d"])
	require.Equal(t, int64(4), fields["count_product_view_30d"])
	require.Equal(t, int64(0), fields["email_opens_30d"])
}

func TestFeatures_SessionsSplitOnInactivityAndMergeLateEvents(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	var f Features
	f.Aggregate([]Event{productView("1", "c", t0), productView("2", "c", t0.Add(50*time.Minute))})
	require.Equal(t, int64(2), f.Sessions(), "a 50 minute gap starts a new session")
	f.Aggregate([]Event{productView("3", "c", t0.Add(25*time.Minute))})
	require.Equal(t, int64(1), f.Sessions(), "a late event bridging the gap merges the sessions")
	f.Aggregate([]Event{productView("4", "c", t0.Add(-2*time.Hour))})
	require.Equal(t, int64(2), f.Sessions())
}

func TestFeatures_CartIsClearedByPurchaseEvenWhenEventsArriveLate(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	add := func(id, prod string, at time.Time, q int64) Event {
		return Event{EventID: id, CustomerID: "c", Type: TypeAddToCart, Timestamp: at, Properties: Properties{ProductID: prod, Quantity: q}}
	}
	buy := Event{EventID: "buy", CustomerID: "c", Type: TypePurchase, Timestamp: t0.Add(10 * time.Minute), Properties: Properties{OrderID: "o1", TotalMinor: 4200, Currency: "EUR"}}
	var f Features
	f.Aggregate([]Event{add("a1", "p1", t0, 2), add("a2", "p2", t0.Add(20*time.Minute), 1)})
	require.Len(t, f.Cart(), 2)
	f.Aggregate([]Event{buy})
	require.Equal(t, []CartLine{{ProductID: "p2", Quantity: 1}}, f.Cart(), "the purchase cleared what was added before it")
	f.Aggregate([]Event{add("a0", "p3", t0.Add(5*time.Minute), 1)})
	require.Equal(t, []CartLine{{ProductID: "p2", Quantity: 1}}, f.Cart(), "a late add from before the purchase stays cleared")
	f.Aggregate([]Event{{EventID: "r1", CustomerID: "c", Type: TypeRemoveFromCart, Timestamp: t0.Add(30 * time.Minute), Properties: Properties{ProductID: "p2"}}})
	require.Empty(t, f.Cart())
	require.Equal(t, int64(1), f.Orders)
	require.Equal(t, map[string]int64{"EUR": 4200}, f.LifetimeValue)
}

func TestFeatures_BoundsEveryList(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	var f Features
	var events []Event
	for i := range 3000 {
		e := productView(fmt.Sprintf("e%d", i), "c", now.Add(-time.Duration(i)*time.Hour))
		e.Properties.ProductID = fmt.Sprintf("p%d", i%100)
		e.Properties.Category = fmt.Sprintf("cat%d", i%120)
		events = append(events, e)
	}
	require.Equal(t, 3000, f.Aggregate(events))
	require.Len(t, f.RecentIDs, RecentIDsMax)
	require.Len(t, f.RecentlyViewed, RecentlyViewedMax)
	require.Equal(t, "p0", f.RecentlyViewed[0].ProductID, "newest first")
	require.LessOrEqual(t, len(f.SessionSpans), sessionsKeptMax)
	require.Equal(t, int64(3000), f.Sessions(), "hourly events are separate sessions, folded ones included")
	require.LessOrEqual(t, len(f.AffinityRaw), affinityMax)
	for k, m := range f.Buckets {
		require.LessOrEqual(t, len(m), 32, "bucket %s pruned", k)
	}
	// The last 500 ids are remembered: redelivering them counts nothing.
	require.Equal(t, 0, f.Aggregate(events[len(events)-RecentIDsMax:]))
}

func TestFeatures_AffinityDecaysWithHalfLife(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	var f Features
	e := productView("x", "c", now.Add(-AffinityHalfLife))
	e.Properties.Category = "shoes"
	f.Aggregate([]Event{e})
	require.InDelta(t, 0.5, f.Affinity(now)["shoes"], 1e-9)
	require.InDelta(t, 0.25, f.Affinity(now.Add(AffinityHalfLife))["shoes"], 1e-9)
}

// BenchmarkAggregate measures in-process aggregation throughput: batches of 500 events over
// 500 customers, grouped per customer as the writer does, on one goroutine.
func BenchmarkAggregate(b *testing.B) {
	now := time.Now().UTC()
	r := rand.New(rand.NewPCG(3, 4))
	events := genEvents(r, 100_000, 500, now)
	profiles := map[string]*Features{}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		start := (i * 500) % len(events)
		batch := events[start : start+500]
		groups := map[string][]Event{}
		for _, e := range batch {
			groups[e.CustomerID] = append(groups[e.CustomerID], e)
		}
		for id, evs := range groups {
			f := profiles[id]
			if f == nil {
				f = &Features{}
				profiles[id] = f
			}
			f.Aggregate(evs)
		}
		n += len(batch)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

func TestFeatures_StateRoundTripsCompressed(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 34, 56, 0, time.UTC)
	events := genEvents(rand.New(rand.NewPCG(7, 8)), 400, 1, now)
	var f Features
	f.Aggregate(events)
	state, err := encodeState(&f)
	require.NoError(t, err)
	plain, err := json.Marshal(&f)
	require.NoError(t, err)
	require.Less(t, len(state), len(plain)/2, "compressed state is much smaller")
	for _, enc := range [][]byte{state, plain} {
		var back Features
		require.NoError(t, decodeState(enc, &back))
		requireMatchesTruth(t, &back, groundTruth(events, now), now, "decoded")
		require.Equal(t, 0, back.Aggregate(events[len(events)-RecentIDsMax:]), "the dedupe set survives encoding")
	}
}
