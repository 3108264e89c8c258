package profile

import (
	"bytes"
	"cmp"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tailor-email/tailor/internal/ddb"
	"github.com/tailor-email/tailor/pipeline/events"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tailor-email/tailor/internal/ctxtime"
)

// Writer defaults.
const (
	WriterConcurrencyDefault = 16
	WriterCacheSizeDefault   = 5000
	writerMaxAttempts        = 20
)

// Profile attributes the event path writes. ev_state holds Features as JSON (one attribute is
// much cheaper to update than many nested ones); the others are readable summaries for
// segments and templates. A write never touches CRM attributes.
const (
	AttrEventState     = "ev_state"
	AttrEventVersion   = "ev_version"
	AttrFirstSeen      = "first_seen"
	AttrLastSeen       = "last_seen"
	AttrLastEventAt    = "last_event_at" // = last_seen, the skeleton's name, kept for segments
	AttrSessions       = "sessions"
	AttrOrders         = "orders"
	AttrLifetimeValue  = "lifetime_value" // map currency -> minor units
	AttrLastPurchase   = "last_purchase"
	AttrRecentlyViewed = "recently_viewed"
	AttrCart           = "cart"
	// AttrCountPrefix prefixes lifetime counts per event type: count_product_view, ...
	AttrCountPrefix = "count_"
)

// WriterConfig configures a Writer. Zero values mean defaults.
type WriterConfig struct {
	// Concurrency bounds the profile writes in flight, across all concurrent Apply calls (one
	// per shard); one call uses at most half. More is slower against a single emulator and
	// beyond the SDK's idle connections per host. Default 16.
	Concurrency int
	// CacheSize bounds the profiles whose Features are kept in memory between batches (a
	// consumer that holds a shard is normally their only writer; a stale entry is detected by
	// the version condition and re-read). Default 5000; negative disables the cache.
	CacheSize int
}

// Writer aggregates events into profiles: all of a batch's events for one customer
// become one conditional UpdateItem guarded by the profile's event version (ev_version), and
// events already among the profile's recent ids are skipped, so redelivery never double counts
// and concurrent writers (a stolen lease) never lose an update. It implements EventSink and is
// safe for concurrent use.
type Writer struct {
	db    *dynamodb.Client
	table string
	cfg   WriterConfig

	sem chan struct{} // bounds writes in flight across Apply calls

	mu    sync.Mutex
	cache map[string]*Features
}

// NewWriter returns a writer over the store's table.
func NewWriter(store *Store, cfg WriterConfig) *Writer {
	cfg.Concurrency = cmp.Or(cfg.Concurrency, WriterConcurrencyDefault)
	cfg.CacheSize = cmp.Or(cfg.CacheSize, WriterCacheSizeDefault)
	return &Writer{db: store.db, table: store.table, cfg: cfg, sem: make(chan struct{}, cfg.Concurrency), cache: map[string]*Features{}}
}

// Apply writes events to their profiles and returns when every write is durable.
func (w *Writer) Apply(ctx context.Context, evs []events.Event) error {
	byID := map[string][]events.Event{}
	var order []string
	for _, ev := range evs {
		id := ev.ProfileID()
		if _, ok := byID[id]; !ok {
			order = append(order, id)
		}
		byID[id] = append(byID[id], ev)
	}
	if err := w.prefetch(ctx, order); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// One Apply (one shard's batch) may use half of the shared slots, so a big batch after a
	// stall does not hold up the other shards' small ones.
	local := make(chan struct{}, max(w.cfg.Concurrency/2, 1))
	acquire := func() bool {
		select {
		case local <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		select {
		case w.sem <- struct{}{}:
			return true
		case <-ctx.Done():
			<-local
			return false
		}
	}
	var wg sync.WaitGroup
	for _, id := range order {
		if !acquire() {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-w.sem; <-local }()
			if err := w.applyOne(ctx, id, byID[id]); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

func (w *Writer) applyOne(ctx context.Context, id string, evs []events.Event) error {
	for attempt := 0; attempt < writerMaxAttempts; attempt++ {
		if attempt > 1 {
			if err := ctxtime.Sleep(ctx, ddb.Backoff(attempt)); err != nil {
				return err
			}
		}
		f, err := w.load(ctx, id, attempt == 0)
		if err != nil {
			return err
		}
		if f.Aggregate(evs) == 0 {
			profileWrites.WithLabelValues("unchanged").Inc()
			w.remember(id, f)
			return nil
		}
		err = w.write(ctx, id, f)
		if errors.Is(err, errVersionConflict) {
			profileWrites.WithLabelValues("conflict").Inc()
			continue // another writer moved the profile on: re-read and re-apply
		}
		if err != nil {
			return err
		}
		profileWrites.WithLabelValues("ok").Inc()
		w.remember(id, f)
		return nil
	}
	return fmt.Errorf("write profile %s: version conflict after %d attempts", id, writerMaxAttempts)
}

var errVersionConflict = errors.New("profile version conflict")

// load returns the profile's Features, from the cache when allowed (the entry is taken out:
// it is put back only after a successful write).
func (w *Writer) load(ctx context.Context, id string, useCache bool) (*Features, error) {
	w.mu.Lock()
	f, ok := w.cache[id]
	delete(w.cache, id)
	w.mu.Unlock()
	if ok && useCache {
		return f, nil
	}
	out, err := w.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(w.table), Key: key(id), ConsistentRead: aws.Bool(true),
		ProjectionExpression:     aws.String("#v, #s"),
		ExpressionAttributeNames: map[string]string{"#v": AttrEventVersion, "#s": AttrEventState},
	})
	if err != nil {
		return nil, fmt.Errorf("read profile %s: %w", id, err)
	}
	return DecodeFeatures(out.Item)
}

// prefetch reads the Features of the profiles not in the cache with BatchGetItem (100 per
// call, instead of one GetItem each) and caches them; absent profiles are cached empty.
func (w *Writer) prefetch(ctx context.Context, ids []string) error {
	if w.cfg.CacheSize < 0 {
		return nil
	}
	w.mu.Lock()
	var missing []string
	for _, id := range ids {
		if _, ok := w.cache[id]; !ok {
			missing = append(missing, id)
		}
	}
	w.mu.Unlock()
	for chunk := range slices.Chunk(missing, BatchGetMax) {
		found := make(map[string]*Features, len(chunk))
		keys := make([]map[string]types.AttributeValue, len(chunk))
		for i, id := range chunk {
			keys[i] = key(id)
		}
		req := map[string]types.KeysAndAttributes{w.table: {
			Keys: keys, ConsistentRead: aws.Bool(true), ProjectionExpression: aws.String("#k, #v, #s"),
			ExpressionAttributeNames: map[string]string{"#k": ProfileKey, "#v": AttrEventVersion, "#s": AttrEventState},
		}}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 10 {
				return fmt.Errorf("read profiles: keys still unprocessed after %d attempts", attempt)
			}
			if attempt > 0 {
				if err := ctxtime.Sleep(ctx, ddb.Backoff(attempt)); err != nil {
					return err
				}
			}
			out, err := w.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return fmt.Errorf("read profiles: %w", err)
			}
			for _, item := range out.Responses[w.table] {
				id, _ := item[ProfileKey].(*types.AttributeValueMemberS)
				if id == nil {
					continue
				}
				f, err := DecodeFeatures(item)
				if err != nil {
					return fmt.Errorf("profile %s: %w", id.Value, err)
				}
				found[id.Value] = f
			}
			req = out.UnprocessedKeys
		}
		for _, id := range chunk {
			f := found[id]
			if f == nil {
				f = &Features{}
			}
			w.remember(id, f)
		}
	}
	return nil
}

func (w *Writer) remember(id string, f *Features) {
	if w.cfg.CacheSize < 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cache) >= w.cfg.CacheSize {
		clear(w.cache) // crude but bounded; entries are re-read on demand
	}
	w.cache[id] = f
}

// stateDeflate marks an ev_state value compressed with DEFLATE; a value starting with '{' is
// plain JSON.
const stateDeflate = 0x01

var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(io.Discard, flate.BestSpeed)
	return w
}}

// encodeState is f as JSON, compressed: smaller items cost fewer write units (and an emulator
// much less time).
func encodeState(f *Features) ([]byte, error) {
	js, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(js)/2 + 16)
	buf.WriteByte(stateDeflate)
	zw := flateWriters.Get().(*flate.Writer)
	defer flateWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(js); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeState(b []byte, f *Features) error {
	if len(b) > 0 && b[0] == stateDeflate {
		zr := flate.NewReader(bytes.NewReader(b[1:]))
		defer zr.Close()
		var err error
		if b, err = io.ReadAll(io.LimitReader(zr, 4<<20)); err != nil {
			return fmt.Errorf("inflate: %w", err)
		}
	}
	return json.Unmarshal(b, f)
}

// DecodeFeatures reads Features from a profile item (other attributes are ignored).
func DecodeFeatures(item map[string]types.AttributeValue) (*Features, error) {
	f := &Features{}
	if item == nil {
		return f, nil
	}
	if v, ok := item[AttrEventVersion].(*types.AttributeValueMemberN); ok {
		n, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("decode profile features: %s: %w", AttrEventVersion, err)
		}
		f.Version = n
	}
	if v, ok := item[AttrEventState].(*types.AttributeValueMemberB); ok {
		if err := decodeState(v.Value, f); err != nil {
			return nil, fmt.Errorf("decode profile features: %w", err)
		}
	}
	return f, nil
}

// FeaturesOf reads Features from a decoded Profile (as Store.Get returns it).
func FeaturesOf(p Profile) (*Features, error) {
	f := &Features{}
	if v, ok := p[AttrEventVersion].(float64); ok {
		f.Version = int64(v)
	}
	if b, ok := p[AttrEventState].([]byte); ok {
		if err := decodeState(b, f); err != nil {
			return nil, fmt.Errorf("decode profile features: %w", err)
		}
	}
	return f, nil
}

// write stores f with one conditional UpdateItem: f.Version must still be the stored version.
func (w *Writer) write(ctx context.Context, id string, f *Features) error {
	prev := f.Version
	state, err := encodeState(f)
	if err != nil {
		return fmt.Errorf("encode profile %s: %w", id, err)
	}
	readable := map[string]any{
		AttrSessions:       f.Sessions(),
		AttrOrders:         f.Orders,
		AttrLifetimeValue:  lifetimeValueAttr(f.LifetimeValue),
		AttrRecentlyViewed: recentlyViewedAttr(f.RecentlyViewed),
		AttrCart:           cartAttr(f.Cart()),
	}
	if !f.FirstSeen.IsZero() {
		readable[AttrFirstSeen], readable[AttrLastSeen] = f.FirstSeen.Format(time.RFC3339Nano), f.LastSeen.Format(time.RFC3339Nano)
		readable[AttrLastEventAt] = readable[AttrLastSeen]
	}
	if lp := f.LastPurchase; lp != nil {
		readable[AttrLastPurchase] = map[string]any{"order_id": lp.OrderID, "at": lp.At.Format(time.RFC3339Nano), "total": lp.TotalMinor, "currency": lp.Currency}
	}
	for typ, n := range f.Counts {
		readable[AttrCountPrefix+typ] = n
	}
	// The nested summaries cost an emulator (and DynamoDB's write units) far more than the
	// scalars: write them only when this batch changed them.
	if prev > 0 && f.dirty&dirtyViewed == 0 {
		delete(readable, AttrRecentlyViewed)
	}
	if prev > 0 && f.dirty&dirtyCart == 0 {
		delete(readable, AttrCart)
	}
	if prev > 0 && f.dirty&dirtyPurchase == 0 {
		delete(readable, AttrLastPurchase)
		delete(readable, AttrLifetimeValue)
	}
	// Scalars (counts, sessions, orders, times) are rewritten only when they changed since this
	// process last wrote the profile; after a fresh read every one is written.
	scalars := make(map[string]any, len(readable))
	for k, v := range readable {
		switch v.(type) {
		case int64, string:
			scalars[k] = v
			if prev > 0 && f.written != nil && f.written[k] == v {
				delete(readable, k)
			}
		}
	}
	names := map[string]string{"#ver": AttrEventVersion, "#st": AttrEventState}
	values := map[string]types.AttributeValue{
		":ver": ddb.N(prev + 1),
		":st":  &types.AttributeValueMemberB{Value: state},
	}
	sets := []string{"#ver = :ver", "#st = :st"}
	for i, k := range slices.Sorted(maps.Keys(readable)) {
		av, err := attributevalue.Marshal(readable[k])
		if err != nil {
			return fmt.Errorf("encode profile %s: %s: %w", id, k, err)
		}
		n, v := "#a"+strconv.Itoa(i), ":a"+strconv.Itoa(i)
		names[n], values[v] = k, av
		sets = append(sets, n+" = "+v)
	}
	cond := "attribute_not_exists(#ver)"
	if prev > 0 {
		cond = "#ver = :prev"
		values[":prev"] = ddb.N(prev)
	}
	_, err = w.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(w.table), Key: key(id),
		UpdateExpression: aws.String("SET " + strings.Join(sets, ", ")), ConditionExpression: aws.String(cond),
		ExpressionAttributeNames: names, ExpressionAttributeValues: values,
	})
	if ddb.IsConditionFailed(err) {
		return errVersionConflict
	}
	if err != nil {
		return fmt.Errorf("write profile %s: %w", id, err)
	}
	f.Version = prev + 1
	f.dirty = 0
	f.written = scalars
	return nil
}

func lifetimeValueAttr(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}

func recentlyViewedAttr(vs []ViewedProduct) []map[string]any {
	out := make([]map[string]any, 0, len(vs))
	for _, v := range vs {
		m := map[string]any{"product_id": v.ProductID, "at": v.At.Format(time.RFC3339Nano)}
		if v.Category != "" {
			m["category"] = v.Category
		}
		out = append(out, m)
	}
	return out
}

func cartAttr(lines []CartLine) []map[string]any {
	out := make([]map[string]any, 0, len(lines))
	for _, l := range lines {
		m := map[string]any{"product_id": l.ProductID, "quantity": l.Quantity}
		if l.Category != "" {
			m["category"] = l.Category
		}
		if l.PriceMinor != 0 {
			m["price"], m["currency"] = l.PriceMinor, l.Currency
		}
		out = append(out, m)
	}
	return out
}
