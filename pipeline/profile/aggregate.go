package profile

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/tailor-email/tailor/pipeline/events"
)

// Aggregation windows and bounds. Every list and map in Features is bounded so a profile stays
// far below DynamoDB's 400 KB item limit.
const (
	Window1h  = time.Hour
	Window24h = 24 * time.Hour
	Window7d  = 7 * 24 * time.Hour
	Window30d = 30 * 24 * time.Hour

	SessionGap          = 30 * time.Minute
	RecentlyViewedMax   = 20
	RecentIDsMax        = 256 // event ids remembered per profile for dedupe (as 64-bit hashes)
	AffinityHalfLife    = 7 * 24 * time.Hour
	AffinityMax         = 50
	SessionsKeptMax     = 200
	CartEventsMax       = 200
	CurrenciesMax       = 10
	bucketMinutes       = 5 * time.Minute
	bucketHour          = time.Hour
	bucketDay           = 24 * time.Hour
	minuteBucketsRetain = Window1h + bucketMinutes
	hourBucketsRetain   = Window24h + bucketHour
	dayBucketsRetain    = Window30d + bucketDay
)

// Category affinity weights per signal.
const (
	affinityView     = 1.0
	affinityCart     = 3.0
	affinityPurchase = 5.0
)

// Features are a profile's behavioural aggregates, computed from events in any order: every
// aggregate is either commutative (counts, sums, min/max, time buckets, decayed scores against
// a reference time) or kept as the bounded, time-ordered set it derives from (sessions, cart,
// recently viewed), so out-of-order delivery gives the same result as in-order delivery.
// Features is stored on the profile item next to the CRM attributes as one compressed JSON
// attribute (ev_state, see Writer); Profile.Fields reads it for segments and templates.
type Features struct {
	// Version increases with every write; writes are conditional on it.
	Version int64 `json:"-"`
	// RecentIDs are the 64-bit FNV-1a hashes of the last RecentIDsMax applied event ids, oldest
	// first (dedupe). Hashes keep the profile small whatever the ids look like; a collision
	// (about 1 in 10^14 per event) would skip one event.
	RecentIDs IDHashes `json:"ev_recent_ids,omitempty"`
	// Counts are lifetime counts per event type.
	Counts map[string]int64 `json:"ev_counts,omitempty"`
	// Buckets hold per-type counts in time buckets, keyed "<type>/<res>" (res m5, h1, d1), then
	// by the bucket's start in Unix seconds; windowed counts are summed from them at read time.
	Buckets   map[string]map[string]int64 `json:"ev_buckets,omitempty"`
	FirstSeen time.Time                   `json:"first_seen,omitempty"`
	LastSeen  time.Time                   `json:"last_seen,omitempty"`
	// SessionSpans are the most recent sessions (inactivity gap SessionGap); older ones are
	// folded into SessionsFolded.
	SessionSpans   []Span `json:"ev_sessions,omitempty"`
	SessionsFolded int64  `json:"ev_sessions_folded,omitempty"`
	// RecentlyViewed are the last RecentlyViewedMax distinct products viewed, newest first.
	RecentlyViewed []ViewedProduct `json:"recently_viewed,omitempty"`
	// AffinityRaw are category scores as of AffinityRef, halving every AffinityHalfLife.
	AffinityRaw map[string]float64 `json:"ev_affinity,omitempty"`
	AffinityRef time.Time          `json:"ev_affinity_ref,omitempty"`
	// CartEvents are the add/remove events after the last purchase, from which Cart derives.
	CartEvents    []CartEvent      `json:"ev_cart_events,omitempty"`
	Orders        int64            `json:"orders"`
	LifetimeValue map[string]int64 `json:"lifetime_value,omitempty"` // minor units per currency
	LastPurchase  *Purchase        `json:"last_purchase,omitempty"`

	// seen indexes RecentIDs; prunedAt is LastSeen's 5-minute bucket at the last prune. Both
	// are rebuilt on demand after decoding.
	seen     map[uint64]struct{}
	prunedAt int64
}

// Span is one session: first and last event time.
type Span struct {
	Start time.Time `json:"s"`
	End   time.Time `json:"e"`
}

// ViewedProduct is one recently viewed product.
type ViewedProduct struct {
	ProductID string    `json:"product_id"`
	Category  string    `json:"category,omitempty"`
	At        time.Time `json:"at"`
}

// CartEvent is one add (Quantity > 0) or remove (Quantity < 0; RemoveAll without a quantity).
type CartEvent struct {
	EventID    string    `json:"id"`
	At         time.Time `json:"at"`
	ProductID  string    `json:"p"`
	Category   string    `json:"c,omitempty"`
	Quantity   int64     `json:"q"`
	RemoveAll  bool      `json:"all,omitempty"`
	PriceMinor int64     `json:"price,omitempty"`
	Currency   string    `json:"cur,omitempty"`
}

// CartLine is one product in the current cart.
type CartLine struct {
	ProductID  string `json:"product_id"`
	Category   string `json:"category,omitempty"`
	Quantity   int64  `json:"quantity"`
	PriceMinor int64  `json:"price,omitempty"`
	Currency   string `json:"currency,omitempty"`
}

// Purchase is the latest purchase.
type Purchase struct {
	OrderID    string    `json:"order_id"`
	At         time.Time `json:"at"`
	TotalMinor int64     `json:"total"`
	Currency   string    `json:"currency"`
}

var resolutions = [...]struct {
	name   string
	size   time.Duration
	retain time.Duration
}{{"m5", bucketMinutes, minuteBucketsRetain}, {"h1", bucketHour, hourBucketsRetain}, {"d1", bucketDay, dayBucketsRetain}}

// resolutionFor picks the bucket size a window is summed from.
func resolutionFor(window time.Duration) int {
	switch {
	case window <= Window1h:
		return 0
	case window <= Window24h:
		return 1
	default:
		return 2
	}
}

// BucketStart is the start of t's bucket of the given size (Unix seconds).
func BucketStart(t time.Time, size time.Duration) int64 {
	s := int64(size / time.Second)
	u := t.Unix()
	return u - ((u%s)+s)%s
}

// Seen reports whether the event id is among the recent ids.
func (f *Features) Seen(id string) bool { return slices.Contains(f.RecentIDs, HashID(id)) }

// HashID is the 64-bit FNV-1a hash of an event id.
func HashID(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// IDHashes is a list of event id hashes, encoded in JSON as base64 of little-endian bytes.
type IDHashes []uint64

// MarshalJSON encodes the hashes compactly.
func (h IDHashes) MarshalJSON() ([]byte, error) {
	b := make([]byte, 8*len(h))
	for i, v := range h {
		binary.LittleEndian.PutUint64(b[8*i:], v)
	}
	return json.Marshal(b)
}

// UnmarshalJSON decodes MarshalJSON's form.
func (h *IDHashes) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("event id hashes: %w", err)
	}
	if len(b)%8 != 0 {
		return fmt.Errorf("event id hashes: %d bytes is not a multiple of 8", len(b))
	}
	out := make(IDHashes, len(b)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	*h = out
	return nil
}

// Aggregate applies events (any order, duplicates allowed) and returns how many were new.
// Events whose id is among the profile's recent ids are skipped, so redelivery never double
// counts. Not safe for concurrent use.
func (f *Features) Aggregate(evs []events.Event) int {
	if f.seen == nil {
		f.seen = make(map[uint64]struct{}, len(f.RecentIDs)+len(evs))
		for _, id := range f.RecentIDs {
			f.seen[id] = struct{}{}
		}
	}
	applied := 0
	for i := range evs {
		ev := &evs[i]
		h := HashID(ev.EventID)
		if _, dup := f.seen[h]; dup {
			continue
		}
		f.seen[h] = struct{}{}
		f.RecentIDs = append(f.RecentIDs, h)
		f.apply(ev)
		applied++
	}
	if n := len(f.RecentIDs) - RecentIDsMax; n > 0 {
		for _, id := range f.RecentIDs[:n] {
			delete(f.seen, id)
		}
		f.RecentIDs = slices.Delete(f.RecentIDs, 0, n)
	}
	if b := BucketStart(f.LastSeen, bucketMinutes); applied > 0 && b != f.prunedAt {
		f.pruneBuckets()
		f.prunedAt = b
	}
	return applied
}

// hasBuckets reports whether any resolution holds buckets of typ.
func (f *Features) hasBuckets(typ string) bool {
	if len(f.Buckets) == 0 {
		return false
	}
	ks, ok := bucketKeys[typ]
	if !ok {
		return true // an unknown type: let the caller look
	}
	for _, k := range ks {
		if len(f.Buckets[k]) > 0 {
			return true
		}
	}
	return false
}

// bucketKeys caches the "<type>/<res>" keys of Buckets.
var bucketKeys = func() map[string][len(resolutions)]string {
	m := make(map[string][len(resolutions)]string, len(events.Types))
	for _, t := range events.Types {
		var ks [len(resolutions)]string
		for i, r := range resolutions {
			ks[i] = t + "/" + r.name
		}
		m[t] = ks
	}
	return m
}()

func (f *Features) apply(ev *events.Event) {
	t := ev.Timestamp.UTC()
	if f.Counts == nil {
		f.Counts = make(map[string]int64, 4)
	}
	f.Counts[ev.Type]++
	if f.Buckets == nil {
		f.Buckets = make(map[string]map[string]int64, 8)
	}
	keys := bucketKeys[ev.Type]
	for i, r := range resolutions {
		k := keys[i]
		if k == "" {
			k = ev.Type + "/" + r.name
		}
		m := f.Buckets[k]
		if m == nil {
			m = make(map[string]int64, 4)
			f.Buckets[k] = m
		}
		m[strconv.FormatInt(BucketStart(t, r.size), 10)]++
	}
	if f.FirstSeen.IsZero() || t.Before(f.FirstSeen) {
		f.FirstSeen = t
	}
	if t.After(f.LastSeen) {
		f.LastSeen = t
	}
	f.addToSession(t)
	p := &ev.Properties
	switch ev.Type {
	case events.TypeProductView:
		f.viewed(p.ProductID, p.Category, t)
		f.affinity(p.Category, affinityView, t)
	case events.TypeAddToCart, events.TypeRemoveFromCart:
		f.cartEvent(ev, t)
		if ev.Type == events.TypeAddToCart {
			f.affinity(p.Category, affinityCart, t)
		}
	case events.TypePurchase:
		f.purchase(ev, t)
		for _, it := range p.Items {
			f.affinity(it.Category, affinityPurchase, t)
		}
	}
}

// addToSession puts t into the session spans: extends a span it is within SessionGap of,
// merging two spans it bridges, or starts a new one.
func (f *Features) addToSession(t time.Time) {
	spans := f.SessionSpans
	// i is the first span starting after t.
	i, _ := slices.BinarySearchFunc(spans, t, func(s Span, t time.Time) int {
		if s.Start.After(t) {
			return 1
		}
		return -1
	})
	joinPrev := i > 0 && !t.After(spans[i-1].End.Add(SessionGap))
	joinNext := i < len(spans) && !spans[i].Start.After(t.Add(SessionGap))
	switch {
	case joinPrev && joinNext:
		spans[i-1].End = maxTime(spans[i].End, t)
		spans = slices.Delete(spans, i, i+1)
	case joinPrev:
		spans[i-1].End = maxTime(spans[i-1].End, t)
	case joinNext:
		spans[i].Start = t
	default:
		if i == 0 && len(spans) >= SessionsKeptMax {
			// Older than every kept session and the history is full: it belongs to the folded
			// past; count it as its own session.
			f.SessionsFolded++
			return
		}
		spans = slices.Insert(spans, i, Span{Start: t, End: t})
	}
	if n := len(spans) - SessionsKeptMax; n > 0 {
		f.SessionsFolded += int64(n)
		spans = slices.Delete(spans, 0, n)
	}
	f.SessionSpans = spans
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Sessions is the number of sessions: runs of events without a SessionGap of inactivity.
func (f *Features) Sessions() int64 { return f.SessionsFolded + int64(len(f.SessionSpans)) }

func (f *Features) viewed(product, category string, t time.Time) {
	if product == "" {
		return
	}
	for i := range f.RecentlyViewed {
		v := &f.RecentlyViewed[i]
		if v.ProductID == product {
			if t.After(v.At) {
				v.At, v.Category = t, cmp.Or(category, v.Category)
			}
			sortViewed(f.RecentlyViewed)
			return
		}
	}
	f.RecentlyViewed = append(f.RecentlyViewed, ViewedProduct{ProductID: product, Category: category, At: t})
	sortViewed(f.RecentlyViewed)
	if len(f.RecentlyViewed) > RecentlyViewedMax {
		f.RecentlyViewed = f.RecentlyViewed[:RecentlyViewedMax]
	}
}

func sortViewed(v []ViewedProduct) {
	slices.SortStableFunc(v, func(a, b ViewedProduct) int {
		if c := b.At.Compare(a.At); c != 0 {
			return c
		}
		return cmp.Compare(a.ProductID, b.ProductID)
	})
}

func (f *Features) affinity(category string, weight float64, t time.Time) {
	if category == "" {
		return
	}
	if f.AffinityRaw == nil {
		f.AffinityRaw = make(map[string]float64, 4)
	}
	if t.After(f.AffinityRef) {
		if !f.AffinityRef.IsZero() {
			k := decay(t.Sub(f.AffinityRef))
			for c, s := range f.AffinityRaw {
				f.AffinityRaw[c] = s * k
			}
		}
		f.AffinityRef = t
	}
	f.AffinityRaw[category] += weight * decay(f.AffinityRef.Sub(t))
	if len(f.AffinityRaw) > AffinityMax {
		low, lowScore := "", math.Inf(1)
		for c, s := range f.AffinityRaw {
			if s < lowScore || s == lowScore && c < low {
				low, lowScore = c, s
			}
		}
		delete(f.AffinityRaw, low)
	}
}

func decay(d time.Duration) float64 {
	return math.Exp2(-float64(d) / float64(AffinityHalfLife))
}

// Affinity returns the time-decayed category scores as of now: each view adds 1, each add to
// cart 3, each purchased item 5, and a score halves every AffinityHalfLife.
func (f *Features) Affinity(now time.Time) map[string]float64 {
	out := make(map[string]float64, len(f.AffinityRaw))
	k := decay(now.Sub(f.AffinityRef))
	for c, s := range f.AffinityRaw {
		out[c] = s * k
	}
	return out
}

func (f *Features) cartEvent(ev *events.Event, t time.Time) {
	if f.LastPurchase != nil && !t.After(f.LastPurchase.At) {
		return // before the last purchase, which cleared the cart
	}
	p := &ev.Properties
	ce := CartEvent{EventID: ev.EventID, At: t, ProductID: p.ProductID, Category: p.Category, PriceMinor: p.PriceMinor, Currency: p.Currency}
	switch {
	case ev.Type == events.TypeAddToCart:
		ce.Quantity = max(p.Quantity, 1)
	case p.Quantity > 0:
		ce.Quantity = -p.Quantity
	default:
		ce.RemoveAll = true
	}
	i, _ := slices.BinarySearchFunc(f.CartEvents, ce, compareCartEvents)
	f.CartEvents = slices.Insert(f.CartEvents, i, ce)
	if n := len(f.CartEvents) - CartEventsMax; n > 0 {
		f.CartEvents = slices.Delete(f.CartEvents, 0, n)
	}
}

func compareCartEvents(a, b CartEvent) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	return cmp.Compare(a.EventID, b.EventID)
}

// Cart is the current cart: the adds and removes after the last purchase, in time order,
// products with a positive quantity, sorted by product id.
func (f *Features) Cart() []CartLine {
	lines := map[string]*CartLine{}
	for _, ce := range f.CartEvents {
		l := lines[ce.ProductID]
		if l == nil {
			l = &CartLine{ProductID: ce.ProductID}
			lines[ce.ProductID] = l
		}
		switch {
		case ce.RemoveAll:
			l.Quantity = 0
		default:
			l.Quantity = max(l.Quantity+ce.Quantity, 0)
		}
		if ce.Quantity > 0 {
			l.Category = cmp.Or(ce.Category, l.Category)
			if ce.PriceMinor != 0 {
				l.PriceMinor, l.Currency = ce.PriceMinor, ce.Currency
			}
		}
	}
	out := make([]CartLine, 0, len(lines))
	for _, l := range lines {
		if l.Quantity > 0 {
			out = append(out, *l)
		}
	}
	slices.SortFunc(out, func(a, b CartLine) int { return cmp.Compare(a.ProductID, b.ProductID) })
	return out
}

func (f *Features) purchase(ev *events.Event, t time.Time) {
	p := &ev.Properties
	f.Orders++
	if f.LifetimeValue == nil {
		f.LifetimeValue = make(map[string]int64, 1)
	}
	if _, ok := f.LifetimeValue[p.Currency]; ok || len(f.LifetimeValue) < CurrenciesMax {
		f.LifetimeValue[p.Currency] += p.TotalMinor
	}
	if f.LastPurchase == nil || t.After(f.LastPurchase.At) || t.Equal(f.LastPurchase.At) && p.OrderID > f.LastPurchase.OrderID {
		f.LastPurchase = &Purchase{OrderID: p.OrderID, At: t, TotalMinor: p.TotalMinor, Currency: p.Currency}
	}
	// The purchase clears the cart: drop the cart events at or before it.
	f.CartEvents = slices.DeleteFunc(f.CartEvents, func(ce CartEvent) bool { return !ce.At.After(f.LastPurchase.At) })
}

// WindowCount is the number of events of type typ in the window ending at now: the events whose
// bucket is one of the window/size buckets up to and including now's bucket, with 5-minute
// buckets for 1 h, hourly ones for 24 h and daily ones for 7 d and 30 d. It stays correct as
// time passes because it is computed at read time.
func (f *Features) WindowCount(typ string, window time.Duration, now time.Time) int64 {
	r := resolutions[resolutionFor(window)]
	nowB := BucketStart(now, r.size)
	from := nowB - int64(window/time.Second) // exclusive
	ks, ok := bucketKeys[typ]                // no concatenation per call for the known types
	key := ks[resolutionFor(window)]
	if !ok {
		key = typ + "/" + r.name
	}
	var n int64
	for k, c := range f.Buckets[key] {
		b, err := strconv.ParseInt(k, 10, 64)
		if err == nil && b > from && b <= nowB {
			n += c
		}
	}
	return n
}

// pruneBuckets drops buckets that no window can reach any more, relative to the newest event.
func (f *Features) pruneBuckets() {
	for k, m := range f.Buckets {
		r := resolutions[0]
		for _, res := range resolutions {
			if len(k) > 3 && k[len(k)-2:] == res.name {
				r = res
			}
		}
		horizon := BucketStart(f.LastSeen.Add(-r.retain), r.size)
		for b := range m {
			if v, err := strconv.ParseInt(b, 10, 64); err == nil && v < horizon {
				delete(m, b)
			}
		}
		if len(m) == 0 {
			delete(f.Buckets, k)
		}
	}
}
