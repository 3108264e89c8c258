package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ProfileWriter defaults.
const (
	WriterConcurrencyDefault = 32
	WriterCacheSizeDefault   = 20000
	writerMaxAttempts        = 20
)

// featureAttrs are the profile attributes Features owns (besides count_<type>, sessions, cart).
// A write sets the present ones and removes the absent ones; it never touches CRM attributes.
var featureAttrs = []string{
	"ev_recent_ids", "ev_counts", "ev_buckets", "first_seen", "last_seen", "ev_sessions",
	"ev_sessions_folded", "recently_viewed", "ev_affinity", "ev_affinity_ref", "ev_cart_events",
	"orders", "lifetime_value", "last_purchase",
}

// Derived attributes written for readers that do not decode Features (segments, templates).
const (
	AttrSessions = "sessions"
	AttrCart     = "cart"
	attrVersion  = "ev_version"
)

// ProfileWriterConfig configures a ProfileWriter. Zero values mean defaults.
type ProfileWriterConfig struct {
	// Concurrency bounds the customers written at once per Apply. Default 32.
	Concurrency int
	// CacheSize bounds the profiles whose Features are kept in memory between batches (a
	// consumer that holds a shard is normally their only writer; a stale entry is detected by
	// the version condition and re-read). Default 20000; negative disables the cache.
	CacheSize int
}

// ProfileWriter aggregates events into profiles: all of a batch's events for one customer
// become one conditional UpdateItem guarded by the profile's event version (ev_version), and
// events already among the profile's recent ids are skipped, so redelivery never double counts
// and concurrent writers (a stolen lease) never lose an update. It implements EventSink and is
// safe for concurrent use.
type ProfileWriter struct {
	db    *dynamodb.Client
	table string
	cfg   ProfileWriterConfig

	mu    sync.Mutex
	cache map[string]*Features
}

// NewProfileWriter returns a writer over the store's table.
func NewProfileWriter(store *ProfileStore, cfg ProfileWriterConfig) *ProfileWriter {
	cfg.Concurrency = cmp.Or(cfg.Concurrency, WriterConcurrencyDefault)
	cfg.CacheSize = cmp.Or(cfg.CacheSize, WriterCacheSizeDefault)
	return &ProfileWriter{db: store.db, table: store.table, cfg: cfg, cache: map[string]*Features{}}
}

// Apply writes events to their profiles and returns when every write is durable.
func (w *ProfileWriter) Apply(ctx context.Context, events []Event) error {
	byID := map[string][]Event{}
	var order []string
	for _, ev := range events {
		id := ev.ProfileID()
		if _, ok := byID[id]; !ok {
			order = append(order, id)
		}
		byID[id] = append(byID[id], ev)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, id := range order {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
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

func (w *ProfileWriter) applyOne(ctx context.Context, id string, events []Event) error {
	for attempt := 0; attempt < writerMaxAttempts; attempt++ {
		if attempt > 1 {
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return err
			}
		}
		f, err := w.load(ctx, id, attempt == 0)
		if err != nil {
			return err
		}
		if f.Aggregate(events) == 0 {
			w.remember(id, f)
			return nil
		}
		err = w.write(ctx, id, f)
		if errors.Is(err, errVersionConflict) {
			continue // another writer moved the profile on: re-read and re-apply
		}
		if err != nil {
			return err
		}
		w.remember(id, f)
		return nil
	}
	return fmt.Errorf("write profile %s: version conflict after %d attempts", id, writerMaxAttempts)
}

var errVersionConflict = errors.New("profile version conflict")

// load returns the profile's Features, from the cache when allowed (the entry is taken out:
// it is put back only after a successful write).
func (w *ProfileWriter) load(ctx context.Context, id string, useCache bool) (*Features, error) {
	w.mu.Lock()
	f, ok := w.cache[id]
	delete(w.cache, id)
	w.mu.Unlock()
	if ok && useCache {
		return f, nil
	}
	out, err := w.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(w.table), Key: key(id), ConsistentRead: aws.Bool(true),
		ProjectionExpression:     aws.String(projection()),
		ExpressionAttributeNames: projectionNames(),
	})
	if err != nil {
		return nil, fmt.Errorf("read profile %s: %w", id, err)
	}
	return DecodeFeatures(out.Item)
}

func (w *ProfileWriter) remember(id string, f *Features) {
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

func projection() string {
	parts := make([]string, 0, len(featureAttrs)+1)
	for i := range len(featureAttrs) + 1 {
		parts = append(parts, "#p"+strconv.Itoa(i))
	}
	return strings.Join(parts, ", ")
}

func projectionNames() map[string]string {
	names := map[string]string{"#p0": attrVersion}
	for i, a := range featureAttrs {
		names["#p"+strconv.Itoa(i+1)] = a
	}
	return names
}

// DecodeFeatures reads Features from a profile item (other attributes are ignored).
func DecodeFeatures(item map[string]types.AttributeValue) (*Features, error) {
	f := &Features{}
	if item == nil {
		return f, nil
	}
	if err := attributevalue.UnmarshalMap(item, f); err != nil {
		return nil, fmt.Errorf("decode profile features: %w", err)
	}
	return f, nil
}

// FeaturesOf reads Features from a decoded Profile (as Get returns it).
func FeaturesOf(p Profile) (*Features, error) {
	item, err := attributevalue.MarshalMap(map[string]any(p))
	if err != nil {
		return nil, fmt.Errorf("encode profile: %w", err)
	}
	return DecodeFeatures(item)
}

// write stores f with one conditional UpdateItem: f.Version must still be the stored version.
func (w *ProfileWriter) write(ctx context.Context, id string, f *Features) error {
	prev := f.Version
	f.Version = prev + 1
	item, err := attributevalue.MarshalMap(f)
	if err != nil {
		f.Version = prev
		return fmt.Errorf("encode profile %s: %w", id, err)
	}
	for typ, n := range f.Counts {
		item["count_"+typ] = num(n)
	}
	item[AttrSessions] = num(f.Sessions())
	cart, err := attributevalue.Marshal(f.Cart())
	if err != nil {
		return fmt.Errorf("encode cart of %s: %w", id, err)
	}
	item[AttrCart] = cart
	names := map[string]string{"#ver": attrVersion}
	values := map[string]types.AttributeValue{}
	var sets, removes []string
	for i, k := range slices.Sorted(maps.Keys(item)) {
		if k == ProfileKey {
			continue
		}
		n, v := "#a"+strconv.Itoa(i), ":a"+strconv.Itoa(i)
		if k == attrVersion {
			n = "#ver"
		}
		names[n], values[v] = k, item[k]
		sets = append(sets, n+" = "+v)
	}
	for i, k := range featureAttrs {
		if _, ok := item[k]; !ok {
			n := "#r" + strconv.Itoa(i)
			names[n] = k
			removes = append(removes, n)
		}
	}
	expr := "SET " + strings.Join(sets, ", ")
	if len(removes) > 0 {
		expr += " REMOVE " + strings.Join(removes, ", ")
	}
	cond := "attribute_not_exists(#ver)"
	if prev > 0 {
		cond = "#ver = :prev"
		values[":prev"] = num(prev)
	}
	_, err = w.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(w.table), Key: key(id),
		UpdateExpression: aws.String(expr), ConditionExpression: aws.String(cond),
		ExpressionAttributeNames: names, ExpressionAttributeValues: values,
	})
	if isConditionFailed(err) {
		return errVersionConflict
	}
	if err != nil {
		return fmt.Errorf("write profile %s: %w", id, err)
	}
	return nil
}
