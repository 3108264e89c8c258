package profile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/tailor-email/tailor/internal/ddb"
)

// ErrNotFound is returned by Get when no profile exists for the id.
var ErrNotFound = errors.New("profile not found")

// ErrWriteRefused marks a profile write that can never succeed, so retrying it is pointless:
// a value over this package's bounds (MaxCRMBytes, MaxEntriesPerMap), a value of the wrong
// type for a typed field, or an item DynamoDB refuses as too large. Other DynamoDB errors,
// including other ValidationExceptions (a malformed expression is a bug), are returned as
// they are.
var ErrWriteRefused = errors.New("profile write refused")

func refusedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrWriteRefused, fmt.Sprintf(format, args...))
}

// dataRefusals are the ValidationException messages by which DynamoDB refuses what an item
// holds (too large, nested too deep, a number out of its range) rather than the request.
var dataRefusals = []string{"item size", "exceeded the maximum allowed size", "nesting levels", "number overflow",
	"number underflow", "magnitude larger", "magnitude smaller", "significant digits"}

// refused converts DynamoDB's refusals of an item's data to ErrWriteRefused. Other
// ValidationExceptions are a malformed request (a bug) and stay as they are.
func refused(err error) error {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationException" {
		return err
	}
	msg := strings.ToLower(apiErr.ErrorMessage())
	for _, s := range dataRefusals {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%w: %w", ErrWriteRefused, err)
		}
	}
	return err
}

// Store reads and writes profiles in one DynamoDB table. It is safe for concurrent use.
// Every write is idempotent and version-guarded: CRM writes by the customers row's version,
// preference entries by their own version and their map's floor, so a replayed or older
// change never overwrites a newer one.
type Store struct {
	db    *dynamodb.Client
	table string
	now   func() time.Time
}

// NewStore returns a store over table.
func NewStore(db *dynamodb.Client, table string) *Store {
	return &Store{db: db, table: table, now: time.Now}
}

// Table returns the table name.
func (s *Store) Table() string { return s.table }

// EnsureTable creates the profiles table when missing and waits until it is active.
func (s *Store) EnsureTable(ctx context.Context) error {
	return ddb.EnsureTable(ctx, s.db, s.table, AttrID)
}

func key(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrID: ddb.S(id)}
}

// Get returns one profile (consistent read) or an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*Profile, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: key(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("get profile %s: %w", id, err)
	}
	if out.Item == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return Decode(out.Item)
}

// BatchGet returns the profiles that exist among ids (missing ones are absent from the map),
// with consistent reads, 100 keys per call, retrying unprocessed keys.
func (s *Store) BatchGet(ctx context.Context, ids []string) (map[string]*Profile, error) {
	out := make(map[string]*Profile, len(ids))
	err := ddb.BatchGet(ctx, s.db, s.table, AttrID, ids, nil, func(item map[string]types.AttributeValue) error {
		p, err := Decode(item)
		if err != nil {
			return err
		}
		out[p.ID] = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("batch get profiles: %w", err)
	}
	return out, nil
}

// Scan streams every profile to fn using a parallel scan with the given number of segments; fn
// is called from several goroutines at once and must be safe for that. The first error stops
// the scan. Memory stays bounded by one page per segment.
func (s *Store) Scan(ctx context.Context, segments int, fn func(*Profile) error) error {
	segments = max(segments, 1)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for seg := range segments {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := dynamodb.NewScanPaginator(s.db, &dynamodb.ScanInput{
				TableName: aws.String(s.table), Segment: aws.Int32(int32(seg)), TotalSegments: aws.Int32(int32(segments)),
				ConsistentRead: aws.Bool(true),
			})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					cancel(fmt.Errorf("scan profiles: %w", err))
					return
				}
				for _, item := range page.Items {
					prof, err := Decode(item)
					if err == nil {
						err = fn(prof)
					}
					if err != nil {
						cancel(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// update runs one conditional UpdateItem built with the expression builder and reports whether
// the condition held (false is a replay or an older change, not an error).
func (s *Store) update(ctx context.Context, id string, upd expression.UpdateBuilder, cond *expression.ConditionBuilder) (bool, error) {
	u, c, names, values, err := ddb.Expression(&upd, cond)
	if err != nil {
		return false, fmt.Errorf("profile %s: build update: %w", id, err)
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(s.table), Key: key(id),
		UpdateExpression: u, ConditionExpression: c, ExpressionAttributeNames: names, ExpressionAttributeValues: values,
	})
	if ddb.IsConditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, refused(err)
	}
	return true, nil
}

func name(attr string) expression.NameBuilder { return expression.NameNoDotSplit(attr) }

func (s *Store) stamp() string { return s.now().UTC().Format(timeLayout) }

// newerThan is the version guard: the attribute is absent or below lsn.
func newerThan(attr string, lsn uint64) *expression.ConditionBuilder {
	c := name(attr).AttributeNotExists().Or(name(attr).LessThan(expression.Value(lsn)))
	return &c
}

// ApplyCRM applies a changed customers row: set maps columns to their decoded values (text,
// numbers, booleans, RFC 3339 timestamps, decoded JSON for jsonb), null lists the columns that
// are NULL; columns in neither (an unchanged TOASTed value) keep their stored value. Known
// columns land typed (CRM); the attributes jsonb and every other column land in the
// attributes namespace. The write happens only if lsn is newer than the stored CRM version;
// it reports whether it happened. A value of the wrong type for a typed field, or a row over
// MaxCRMBytes, is ErrWriteRefused.
func (s *Store) ApplyCRM(ctx context.Context, id string, lsn uint64, set map[string]any, null []string) (bool, error) {
	upd := expression.Set(name(attrCRMLSN), expression.Value(lsn)).Set(name(attrUpdatedAt), expression.Value(s.stamp()))
	size := 0
	for col, v := range set {
		attr := ColumnAttribute(col)
		if attr == "" {
			continue
		}
		av, n, err := crmValue(attr, v)
		if err != nil {
			return false, fmt.Errorf("%w: customers row %s, column %s: %w", ErrWriteRefused, id, col, err)
		}
		size += len(col) + n
		upd = upd.Set(name(attr), expression.Value(av))
	}
	if size > MaxCRMBytes {
		return false, refusedf("customers row %s: %d bytes of CRM data, the limit is %d (keep big documents out of customers)", id, size, MaxCRMBytes)
	}
	for _, col := range null {
		if attr := ColumnAttribute(col); attr != "" {
			upd = upd.Remove(name(attr))
		}
	}
	ok, err := s.update(ctx, id, upd, newerThan(attrCRMLSN, lsn))
	if err != nil {
		return false, fmt.Errorf("apply crm %s: %w", id, err)
	}
	return ok, nil
}

// DeleteCRM applies a deleted customers row: the CRM part of the profile goes (the typed
// fields, attributes and the given columns' attributes), both preference maps are emptied and
// their floors raised to lsn, so no older change can bring an entry back. Behavioural features
// stay (erasure of everything is the preferences package's). Guarded like ApplyCRM.
func (s *Store) DeleteCRM(ctx context.Context, id string, lsn uint64, columns []string) (bool, error) {
	empty := map[string]types.AttributeValue{}
	upd := expression.Set(name(attrCRMLSN), expression.Value(lsn)).Set(name(attrUpdatedAt), expression.Value(s.stamp()))
	for _, k := range []EntryKind{Subscriptions, Consents} {
		upd = upd.Set(name(string(k)), expression.Value(&types.AttributeValueMemberM{Value: empty})).Set(name(k.floor()), expression.Value(lsn))
	}
	removed := map[string]bool{}
	for _, col := range append(crmColumnNames(), columns...) {
		if attr := ColumnAttribute(col); attr != "" && !removed[attr] {
			removed[attr] = true
			upd = upd.Remove(name(attr))
		}
	}
	ok, err := s.update(ctx, id, upd, newerThan(attrCRMLSN, lsn))
	if err != nil {
		return false, fmt.Errorf("delete crm %s: %w", id, err)
	}
	return ok, nil
}

func crmColumnNames() []string {
	out := make([]string, 0, len(crmColumns))
	for c := range crmColumns {
		out = append(out, c)
	}
	return out
}

// crmValue converts a decoded column value to its attribute value and an estimate of its
// encoded size.
func crmValue(attr string, v any) (types.AttributeValue, int, error) {
	switch attr {
	case attrEmail, attrFirstName, attrLastName, attrLocale, attrTimezone, attrCountry:
		s, ok := v.(string)
		if !ok {
			return nil, 0, fmt.Errorf("want text, got %T", v)
		}
		return ddb.S(s), len(s), nil
	case attrCreatedAt, attrCRMUpdatedAt:
		t, err := parseTime(v)
		if err != nil {
			return nil, 0, err
		}
		s := t.UTC().Format(timeLayout)
		return ddb.S(s), len(s), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, 0, fmt.Errorf("encode: %w", err)
	}
	av, err := attributevalue.Marshal(v)
	if err != nil {
		return nil, 0, fmt.Errorf("encode: %w", err)
	}
	return av, len(b), nil
}

// parseTime accepts what CDC decodes timestamp columns to (RFC 3339 strings) and dates.
func parseTime(v any) (time.Time, error) {
	switch v := v.(type) {
	case time.Time:
		return v, nil
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02"} {
			if t, err := time.Parse(layout, v); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("%q is not a timestamp", v)
	}
	return time.Time{}, fmt.Errorf("want a timestamp, got %T", v)
}

// ApplyEntry applies a changed row of a preference table (kind Subscriptions: topic, status,
// source, updated_at; kind Consents: purpose, granted, source, at): columns holds the row's
// decoded values, nil for a deleted row, which leaves a tombstone so that an older change
// replayed later cannot bring it back. The write happens only if lsn is newer than the entry's
// own version and than the map's floor (raised by DeleteCRM and ClearEntries), and a map holds
// at most MaxEntriesPerMap entries. It reports whether the write happened.
func (s *Store) ApplyEntry(ctx context.Context, id string, kind EntryKind, entryKey string, lsn uint64, columns map[string]any) (bool, error) {
	if !kind.valid() {
		return false, fmt.Errorf("apply entry %s for %s: unknown kind", kind, id)
	}
	if entryKey == "" || len(entryKey) > MaxEntryKeyLen {
		return false, refusedf("%s of %s: key %q: want 1 to %d bytes", kind, id, entryKey, MaxEntryKeyLen)
	}
	entry, err := entryValue(kind, columns, lsn)
	if err != nil {
		return false, fmt.Errorf("%w: %s.%s of %s: %w", ErrWriteRefused, kind, entryKey, id, err)
	}
	m, path := name(string(kind)), name(string(kind)).AppendName(name(entryKey))
	upd := expression.Set(path, expression.Value(&types.AttributeValueMemberM{Value: entry})).Set(name(attrUpdatedAt), expression.Value(s.stamp()))
	// One level of AND over ORs: the emulator's parser is slow on deeper nesting.
	cond := expression.And(*newerThan(kind.floor(), lsn),
		expression.Or(path.AttributeNotExists(), path.AppendName(name(entryLSN)).LessThan(expression.Value(lsn))),
		expression.Or(m.AttributeNotExists(), path.AttributeExists(), m.Size().LessThan(expression.Value(MaxEntriesPerMap))))
	for attempt := 0; ; attempt++ {
		ok, err := s.update(ctx, id, upd, &cond)
		if err == nil {
			if !ok && attempt == 0 {
				if full, ferr := s.mapFull(ctx, id, kind, entryKey); ferr == nil && full {
					return false, refusedf("%s of %s: already %d entries, the limit", kind, id, MaxEntriesPerMap)
				}
			}
			return ok, nil
		}
		if attempt > 0 || !isMissingPath(err) {
			return false, fmt.Errorf("apply %s.%s for %s: %w", kind, entryKey, id, err)
		}
		// The map does not exist yet and DynamoDB cannot set a path below a missing parent:
		// create it empty (never replacing one a concurrent writer made), then retry.
		if _, err := s.update(ctx, id, expression.Set(m, m.IfNotExists(expression.Value(&types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}}))), nil); err != nil {
			return false, fmt.Errorf("apply %s.%s for %s: create map: %w", kind, entryKey, id, err)
		}
	}
}

// mapFull reports whether a refused entry write was refused for the map's size (a new key in a
// full map) rather than for its version.
func (s *Store) mapFull(ctx context.Context, id string, kind EntryKind, entryKey string) (bool, error) {
	p, err := s.Get(ctx, id)
	if err != nil {
		return false, err
	}
	var n int
	var has bool
	switch kind {
	case Subscriptions:
		_, has = p.Subscriptions[entryKey]
		n = len(p.Subscriptions)
	case Consents:
		_, has = p.Consents[entryKey]
		n = len(p.Consents)
	}
	return !has && n >= MaxEntriesPerMap, nil
}

// entryValue converts a preference row to its stored entry.
func entryValue(kind EntryKind, columns map[string]any, lsn uint64) (map[string]types.AttributeValue, error) {
	e := map[string]types.AttributeValue{entryLSN: &types.AttributeValueMemberN{Value: strconv.FormatUint(lsn, 10)}}
	if columns == nil {
		e[entryDeleted] = &types.AttributeValueMemberBOOL{Value: true}
		return e, nil
	}
	str := func(col string) error {
		v, ok := columns[col]
		if !ok || v == nil {
			return nil
		}
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want text, got %T", col, v)
		}
		e[col] = ddb.S(s)
		return nil
	}
	tm := func(col string) error {
		v, ok := columns[col]
		if !ok || v == nil {
			return nil
		}
		t, err := parseTime(v)
		if err != nil {
			return fmt.Errorf("%s: %w", col, err)
		}
		e[col] = ddb.S(t.UTC().Format(timeLayout))
		return nil
	}
	var err error
	switch kind {
	case Subscriptions:
		err = errors.Join(str("status"), str("source"), tm("updated_at"))
	case Consents:
		g, ok := columns["granted"].(bool)
		if !ok {
			return nil, fmt.Errorf("granted: want a boolean, got %T", columns["granted"])
		}
		e["granted"] = &types.AttributeValueMemberBOOL{Value: g}
		err = errors.Join(str("source"), tm("at"))
	}
	return e, err
}

// ClearEntries empties a preference map of an existing profile and raises its floor to lsn,
// unless the floor is already at or past lsn (CDC: TRUNCATE of a preference table). It never
// creates a profile. It reports whether the write happened.
func (s *Store) ClearEntries(ctx context.Context, id string, kind EntryKind, lsn uint64) (bool, error) {
	upd := expression.Set(name(string(kind)), expression.Value(&types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}})).
		Set(name(kind.floor()), expression.Value(lsn)).Set(name(attrUpdatedAt), expression.Value(s.stamp()))
	cond := name(AttrID).AttributeExists().And(*newerThan(kind.floor(), lsn))
	ok, err := s.update(ctx, id, upd, &cond)
	if err != nil {
		return false, fmt.Errorf("clear %s for %s: %w", kind, id, err)
	}
	return ok, nil
}

// isMissingPath recognises DynamoDB's refusal to set a document path below a missing map.
func isMissingPath(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationException" &&
		strings.Contains(strings.ToLower(apiErr.ErrorMessage()), "document path")
}

// Erase replaces the profile with an erasure marker: the key and ErasedAt, nothing else. It
// wins over every other write (it is not version-guarded), and afterwards the Writer does not
// aggregate events for the id, so events still in the stream cannot bring data back.
func (s *Store) Erase(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: map[string]types.AttributeValue{
		AttrID: ddb.S(id), attrErasedAt: ddb.S(at.UTC().Format(timeLayout)), attrUpdatedAt: ddb.S(s.stamp()),
	}})
	if err != nil {
		return fmt.Errorf("erase profile %s: %w", id, err)
	}
	return nil
}
