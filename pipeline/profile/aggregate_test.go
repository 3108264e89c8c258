package profile_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/profile/profiletest"
)

func TestFeatures_MatchGroundTruthInAnyOrderWithDuplicates(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 34, 56, 0, time.UTC)
	r := rand.New(rand.NewPCG(1, 2))
	evs := profiletest.GenEvents(r, 3000, 20, now)
	for id, evs := range profiletest.ByCustomer(evs) {
		tr := profiletest.GroundTruth(evs, now)
		// In order, in one batch.
		inOrder := slices.Clone(evs)
		slices.SortFunc(inOrder, func(a, b events.Event) int { return a.Timestamp.Compare(b.Timestamp) })
		var f1 profile.Features
		require.Equal(t, len(evs), f1.Aggregate(inOrder))
		profiletest.RequireMatchesTruth(t, &f1, tr, now, id+" in order")

		// Shuffled, with duplicates, in small batches.
		shuffled := append(slices.Clone(evs), evs[:len(evs)/3]...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		var f2 profile.Features
		applied := 0
		for chunk := range slices.Chunk(shuffled, 7) {
			applied += f2.Aggregate(chunk)
		}
		require.Equal(t, len(evs), applied, "%s: duplicates must not count", id)
		profiletest.RequireMatchesTruth(t, &f2, tr, now, id+" shuffled")
	}
}

func TestFeatures_WindowsFollowTheClock(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	var f profile.Features
	f.Aggregate([]events.Event{
		profiletest.ProductView("a", "c", now.Add(-10*time.Minute)),
		profiletest.ProductView("b", "c", now.Add(-3*time.Hour)),
		profiletest.ProductView("c", "c", now.Add(-3*24*time.Hour)),
		profiletest.ProductView("d", "c", now.Add(-20*24*time.Hour)),
	})
	require.Equal(t, int64(1), f.WindowCount(events.TypeProductView, profile.Window1h, now))
	require.Equal(t, int64(2), f.WindowCount(events.TypeProductView, profile.Window24h, now))
	require.Equal(t, int64(3), f.WindowCount(events.TypeProductView, profile.Window7d, now))
	require.Equal(t, int64(4), f.WindowCount(events.TypeProductView, profile.Window30d, now))
	later := now.Add(2 * time.Hour)
	require.Equal(t, int64(0), f.WindowCount(events.TypeProductView, profile.Window1h, later), "1 h window empties as time passes")
	require.Equal(t, int64(2), f.WindowCount(events.TypeProductView, profile.Window24h, later))
	muchLater := now.Add(15 * 24 * time.Hour)
	require.Equal(t, int64(0), f.WindowCount(events.TypeProductView, profile.Window7d, muchLater))
	require.Equal(t, int64(3), f.WindowCount(events.TypeProductView, profile.Window30d, muchLater), "the view 35 days old left the 30 d window")
	require.Equal(t, int64(4), f.Counts[events.TypeProductView], "lifetime counts never decay")
	fields := (&profile.Profile{Behaviour: f}).Fields(later)
	require.Equal(t, int64(0), fields["count_product_view_1h"])
	require.Equal(t, int64(2), fields["count_product_view_24h"])
	require.Equal(t, int64(3), fields["count_product_view_7d"])
	require.Equal(t, int64(4), fields["count_product_view_30d"])
	require.Equal(t, int64(0), fields["email_opens_30d"])
	require.Equal(t, int64(4), fields["count_product_view"])
}

func TestFeatures_SessionsSplitOnInactivityAndMergeLateEvents(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	var f profile.Features
	f.Aggregate([]events.Event{profiletest.ProductView("1", "c", t0), profiletest.ProductView("2", "c", t0.Add(50*time.Minute))})
	require.Equal(t, int64(2), f.Sessions(), "a 50 minute gap starts a new session")
	f.Aggregate([]events.Event{profiletest.ProductView("3", "c", t0.Add(25*time.Minute))})
	require.Equal(t, int64(1), f.Sessions(), "a late event bridging the gap merges the sessions")
	f.Aggregate([]events.Event{profiletest.ProductView("4", "c", t0.Add(-2*time.Hour))})
	require.Equal(t, int64(2), f.Sessions())
}

func TestFeatures_CartIsClearedByPurchaseEvenWhenEventsArriveLate(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	add := func(id, prod string, at time.Time, q int64) events.Event {
		return events.Event{EventID: id, CustomerID: "c", Type: events.TypeAddToCart, Timestamp: at, Properties: events.Properties{ProductID: prod, Quantity: q}}
	}
	buy := events.Event{EventID: "buy", CustomerID: "c", Type: events.TypePurchase, Timestamp: t0.Add(10 * time.Minute), Properties: events.Properties{OrderID: "o1", TotalMinor: 4200, Currency: "EUR"}}
	var f profile.Features
	f.Aggregate([]events.Event{add("a1", "p1", t0, 2), add("a2", "p2", t0.Add(20*time.Minute), 1)})
	require.Len(t, f.Cart(), 2)
	f.Aggregate([]events.Event{buy})
	require.Equal(t, []profile.CartLine{{ProductID: "p2", Quantity: 1}}, f.Cart(), "the purchase cleared what was added before it")
	f.Aggregate([]events.Event{add("a0", "p3", t0.Add(5*time.Minute), 1)})
	require.Equal(t, []profile.CartLine{{ProductID: "p2", Quantity: 1}}, f.Cart(), "a late add from before the purchase stays cleared")
	f.Aggregate([]events.Event{{EventID: "r1", CustomerID: "c", Type: events.TypeRemoveFromCart, Timestamp: t0.Add(30 * time.Minute), Properties: events.Properties{ProductID: "p2"}}})
	require.Empty(t, f.Cart())
	require.Equal(t, int64(1), f.Orders)
	require.Equal(t, map[string]int64{"EUR": 4200}, f.LifetimeValue)
}

func TestFeatures_BoundsEveryList(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	var f profile.Features
	var evs []events.Event
	for i := range 3000 {
		e := profiletest.ProductView(fmt.Sprintf("e%d", i), "c", now.Add(-time.Duration(i)*time.Hour))
		e.Properties.ProductID = fmt.Sprintf("p%d", i%100)
		e.Properties.Category = fmt.Sprintf("cat%d", i%120)
		evs = append(evs, e)
	}
	require.Equal(t, 3000, f.Aggregate(evs))
	require.Len(t, f.RecentIDs, profile.RecentIDsMax)
	require.Len(t, f.RecentlyViewed, profile.RecentlyViewedMax)
	require.Equal(t, "p0", f.RecentlyViewed[0].ProductID, "newest first")
	require.LessOrEqual(t, len(f.SessionSpans), profile.SessionsKeptMax)
	require.Equal(t, int64(3000), f.Sessions(), "hourly events are separate sessions, folded ones included")
	require.LessOrEqual(t, len(f.AffinityRaw), profile.AffinityMax)
	for k, m := range f.Buckets {
		require.LessOrEqual(t, len(m), 32, "bucket %s pruned", k)
	}
	// The last 500 ids are remembered: redelivering them counts nothing.
	require.Equal(t, 0, f.Aggregate(evs[len(evs)-profile.RecentIDsMax:]))
}

func TestFeatures_AffinityDecaysWithHalfLife(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
	var f profile.Features
	e := profiletest.ProductView("x", "c", now.Add(-profile.AffinityHalfLife))
	e.Properties.Category = "shoes"
	f.Aggregate([]events.Event{e})
	require.InDelta(t, 0.5, f.Affinity(now)["shoes"], 1e-9)
	require.InDelta(t, 0.25, f.Affinity(now.Add(profile.AffinityHalfLife))["shoes"], 1e-9)
}

// BenchmarkAggregate measures in-process aggregation throughput: batches of 500 events over
// 500 customers, grouped per customer as the writer does, on one goroutine.
func BenchmarkAggregate(b *testing.B) {
	now := time.Now().UTC()
	r := rand.New(rand.NewPCG(3, 4))
	evs := profiletest.GenEvents(r, 100_000, 500, now)
	profiles := map[string]*profile.Features{}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		start := (i * 500) % len(evs)
		batch := evs[start : start+500]
		groups := map[string][]events.Event{}
		for _, e := range batch {
			groups[e.CustomerID] = append(groups[e.CustomerID], e)
		}
		for id, evs := range groups {
			f := profiles[id]
			if f == nil {
				f = &profile.Features{}
				profiles[id] = f
			}
			f.Aggregate(evs)
		}
		n += len(batch)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
