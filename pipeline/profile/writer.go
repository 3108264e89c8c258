package profile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tailor-email/tailor/internal/ddb"
	"github.com/tailor-email/tailor/pipeline/events"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
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
	// AfterWrite, when set, is called for each profile of an Apply once its write is durable
	// (or found already applied: a redelivered batch calls it again, so it must be
	// idempotent), with the profile's behaviour after the write and the batch's events for it.
	// Triggered campaigns hook in here. An error fails the Apply (the batch is redelivered).
	AfterWrite func(ctx context.Context, id string, f *Features, evs []events.Event) error
}

// Writer aggregates events into profiles: all of a batch's events for one customer become one
// conditional UpdateItem of the behavioural part (ev_state) guarded by the profile's event
// version (ev_version), and events already among the profile's recent ids are skipped, so
// redelivery never double counts and concurrent writers (a stolen lease) never lose an update.
// Events for an erased profile are not aggregated (counted as outcome "erased"). A write never
// touches the CRM part. It implements events.Sink and is safe for concurrent use.
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
		if errors.Is(err, errErased) {
			profileWrites.WithLabelValues("erased").Inc()
			return nil // erased: its events are not aggregated any more
		}
		if err != nil {
			return err
		}
		if f.Aggregate(evs) == 0 {
			profileWrites.WithLabelValues("unchanged").Inc()
			w.remember(id, f)
			return w.after(ctx, id, f, evs)
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
		return w.after(ctx, id, f, evs)
	}
	return fmt.Errorf("write profile %s: version conflict after %d attempts", id, writerMaxAttempts)
}

// after runs the AfterWrite hook on a copy of f (the cached Features stay the writer's).
func (w *Writer) after(ctx context.Context, id string, f *Features, evs []events.Event) error {
	if w.cfg.AfterWrite == nil {
		return nil
	}
	cp := *f
	return w.cfg.AfterWrite(ctx, id, &cp, evs)
}

var (
	errVersionConflict = errors.New("profile version conflict")
	errErased          = errors.New("profile erased")
)

// featureProjection reads what the writer needs of an item.
var featureProjection = func() *ddb.Projection {
	p, err := expression.NewBuilder().WithProjection(expression.NamesList(
		name(AttrID), name(attrEventVersion), name(attrEventState), name(attrErasedAt))).Build()
	if err != nil {
		panic(err) // a constant expression: any test catches it
	}
	return &ddb.Projection{Expression: p.Projection(), Names: p.Names()}
}()

// load returns the profile's Features, from the cache when allowed (the entry is taken out:
// it is put back only after a successful write), or errErased.
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
		ProjectionExpression: featureProjection.Expression, ExpressionAttributeNames: featureProjection.Names,
	})
	if err != nil {
		return nil, fmt.Errorf("read profile %s: %w", id, err)
	}
	if _, erased := out.Item[attrErasedAt]; erased {
		return nil, errErased
	}
	return DecodeFeatures(out.Item)
}

// prefetch reads the Features of the profiles not in the cache with BatchGetItem (100 per
// call, instead of one GetItem each) and caches them; absent profiles are cached empty, erased
// ones are not cached (load finds them erased).
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
	if len(missing) == 0 {
		return nil
	}
	found := make(map[string]*Features, len(missing))
	erased := map[string]bool{}
	err := ddb.BatchGet(ctx, w.db, w.table, AttrID, missing, featureProjection, func(item map[string]types.AttributeValue) error {
		id, _ := item[AttrID].(*types.AttributeValueMemberS)
		if id == nil {
			return nil
		}
		if _, ok := item[attrErasedAt]; ok {
			erased[id.Value] = true
			return nil
		}
		f, err := DecodeFeatures(item)
		if err != nil {
			return fmt.Errorf("profile %s: %w", id.Value, err)
		}
		found[id.Value] = f
		return nil
	})
	if err != nil {
		return fmt.Errorf("read profiles: %w", err)
	}
	for _, id := range missing {
		if erased[id] {
			continue
		}
		f := found[id]
		if f == nil {
			f = &Features{}
		}
		w.remember(id, f)
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

// write stores f with one conditional UpdateItem: f.Version must still be the stored version,
// and the profile must not have been erased meanwhile.
func (w *Writer) write(ctx context.Context, id string, f *Features) error {
	prev := f.Version
	state, err := encodeState(f)
	if err != nil {
		return fmt.Errorf("encode profile %s: %w", id, err)
	}
	upd := expression.Set(name(attrEventVersion), expression.Value(prev+1)).
		Set(name(attrEventState), expression.Value(&types.AttributeValueMemberB{Value: state}))
	cond := name(attrEventVersion).AttributeNotExists()
	if prev > 0 {
		cond = name(attrEventVersion).Equal(expression.Value(prev))
	}
	cond = cond.And(name(attrErasedAt).AttributeNotExists())
	u, c, names, values, err := ddb.Expression(&upd, &cond)
	if err != nil {
		return fmt.Errorf("write profile %s: %w", id, err)
	}
	_, err = w.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(w.table), Key: key(id),
		UpdateExpression: u, ConditionExpression: c, ExpressionAttributeNames: names, ExpressionAttributeValues: values,
	})
	if ddb.IsConditionFailed(err) {
		return errVersionConflict // or erased: the re-read tells
	}
	if err != nil {
		return fmt.Errorf("write profile %s: %w", id, refused(err))
	}
	f.Version = prev + 1
	return nil
}
