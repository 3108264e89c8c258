package profile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tailor-email/tailor/internal/ddb"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/tailor-email/tailor/internal/ctxtime"
)

// ProfileKey is the profiles table's partition key attribute.
const ProfileKey = "customer_id"

// Attribute names the pipeline writes on a profile. CRM fields come from Postgres through CDC;
// crm_lsn guards them so an older change never overwrites a newer one.
const (
	AttrCRMLSN     = "crm_lsn"
	AttrSeenEvents = "seen_events" // string set of recent event ids, for dedupe
	AttrUpdatedAt  = "updated_at"
)

// ErrNotFound is returned by Get when no profile exists for the id.
var ErrNotFound = errors.New("profile not found")

// ErrWriteRefused marks a profile write DynamoDB refuses for good (ValidationException: an item
// over 400 KB, an invalid value): retrying it cannot succeed.
var ErrWriteRefused = errors.New("profile write refused")

// refused wraps a DynamoDB ValidationException with ErrWriteRefused.
func refused(err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationException" {
		return fmt.Errorf("%w: %w", ErrWriteRefused, err)
	}
	return err
}

// Profile is one customer's unified profile as stored in DynamoDB: CRM fields, behavioural
// features and bookkeeping attributes. Numbers decode as float64, sets as []string.
type Profile map[string]any

// ID returns the profile's customer id.
func (p Profile) ID() string { s, _ := p[ProfileKey].(string); return s }

// Store reads and writes profiles in one DynamoDB table. It is safe for concurrent use.
// Every write is idempotent: event counters dedupe by event id, CRM writes are LSN-guarded.
type Store struct {
	db    *dynamodb.Client
	table string
}

// NewStore returns a store over table.
func NewStore(db *dynamodb.Client, table string) *Store {
	return &Store{db: db, table: table}
}

// Table returns the table name.
func (s *Store) Table() string { return s.table }

// EnsureTable creates the profiles table when missing and waits until it is active.
func (s *Store) EnsureTable(ctx context.Context) error {
	return ddb.EnsureTable(ctx, s.db, s.table, ProfileKey)
}

func key(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{ProfileKey: &types.AttributeValueMemberS{Value: id}}
}

// Get returns one profile (consistent read) or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Profile, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: key(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("get profile %s: %w", id, err)
	}
	if out.Item == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return decodeProfile(out.Item)
}

func decodeProfile(item map[string]types.AttributeValue) (Profile, error) {
	var p Profile
	if err := attributevalue.UnmarshalMap(item, &p); err != nil {
		return nil, fmt.Errorf("decode profile: %w", err)
	}
	return p, nil
}

// BatchGetMax is DynamoDB's BatchGetItem limit.
const BatchGetMax = 100

// BatchGet returns the profiles that exist among ids (missing ones are absent from the map). It
// splits into calls of 100 keys and retries UnprocessedKeys with backoff.
func (s *Store) BatchGet(ctx context.Context, ids []string) (map[string]Profile, error) {
	out := make(map[string]Profile, len(ids))
	uniq := slices.Compact(slices.Sorted(slices.Values(ids)))
	for chunk := range slices.Chunk(uniq, BatchGetMax) {
		keys := make([]map[string]types.AttributeValue, len(chunk))
		for i, id := range chunk {
			keys[i] = key(id)
		}
		req := map[string]types.KeysAndAttributes{s.table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 {
				if err := ctxtime.Sleep(ctx, ddb.Backoff(attempt)); err != nil {
					return nil, err
				}
			}
			if attempt > 10 {
				return nil, fmt.Errorf("batch get profiles: %d keys still unprocessed after %d attempts", len(req[s.table].Keys), attempt)
			}
			res, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, fmt.Errorf("batch get profiles: %w", err)
			}
			for _, item := range res.Responses[s.table] {
				p, err := decodeProfile(item)
				if err != nil {
					return nil, err
				}
				out[p.ID()] = p
			}
			req = res.UnprocessedKeys
		}
	}
	return out, nil
}

// Scan streams every profile to fn using a parallel scan with the given number of segments; fn
// is called from several goroutines at once and must be safe for that. The first error stops
// the scan. Memory stays bounded by one page per segment.
func (s *Store) Scan(ctx context.Context, segments int, fn func(Profile) error) error {
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
					prof, err := decodeProfile(item)
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

// ApplyCRM sets fields (and removes the attributes named in remove) on the profile for id, only
// if lsn is newer than the profile's crm_lsn. It reports whether the write happened: false means
// the profile already reflects this change or a newer one (a replay), which is not an error.
func (s *Store) ApplyCRM(ctx context.Context, id string, lsn uint64, fields map[string]any, remove []string) (bool, error) {
	names := map[string]string{"#lsn": AttrCRMLSN, "#upd": AttrUpdatedAt}
	values := map[string]types.AttributeValue{
		":lsn": &types.AttributeValueMemberN{Value: strconv.FormatUint(lsn, 10)},
		":upd": &types.AttributeValueMemberS{Value: time.Now().UTC().Format(time.RFC3339Nano)},
	}
	sets := []string{"#lsn = :lsn", "#upd = :upd"}
	for i, k := range slices.Sorted(maps.Keys(fields)) {
		if k == ProfileKey {
			continue
		}
		av, err := attributevalue.Marshal(fields[k])
		if err != nil {
			return false, fmt.Errorf("apply crm %s: field %s: %w", id, k, err)
		}
		n, v := "#f"+strconv.Itoa(i), ":f"+strconv.Itoa(i)
		names[n], values[v] = k, av
		sets = append(sets, n+" = "+v)
	}
	expr := "SET " + strings.Join(sets, ", ")
	if len(remove) > 0 {
		var rm []string
		for i, k := range remove {
			n := "#r" + strconv.Itoa(i)
			names[n] = k
			rm = append(rm, n)
		}
		expr += " REMOVE " + strings.Join(rm, ", ")
	}
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(s.table), Key: key(id),
		UpdateExpression:          aws.String(expr),
		ConditionExpression:       aws.String("attribute_not_exists(#lsn) OR #lsn < :lsn"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("apply crm %s: %w", id, refused(err))
	}
	return true, nil
}

// ApplyCRMEntry writes one entry of a map attribute that mirrors a child table of the CRM (CDC
// lands subscriptions as subscriptions.<topic>, consents as consents.<purpose>). The entry is
// value plus {"lsn": lsn}; a nil value writes a tombstone {"lsn": lsn, "deleted": true}, so that an
// older change replayed later cannot bring a deleted row back. The write happens only if lsn is
// newer than the entry's own lsn and than the map's floor attribute <attr>_lsn (raised by erasure
// and truncation). It reports whether the write happened; false is a replay, not an error.
func (s *Store) ApplyCRMEntry(ctx context.Context, id, attr, entryKey string, lsn uint64, value map[string]any) (bool, error) {
	entry := make(map[string]any, len(value)+2)
	maps.Copy(entry, value)
	entry["lsn"] = lsn
	if value == nil {
		entry["deleted"] = true
	}
	av, err := attributevalue.Marshal(entry)
	if err != nil {
		return false, fmt.Errorf("apply crm %s.%s for %s: %w", attr, entryKey, id, err)
	}
	in := &dynamodb.UpdateItemInput{
		TableName: aws.String(s.table), Key: key(id),
		UpdateExpression: aws.String("SET #m.#k = :v, #upd = :upd"),
		ConditionExpression: aws.String("(attribute_not_exists(#floor) OR #floor < :lsn) AND " +
			"(attribute_not_exists(#m.#k) OR attribute_not_exists(#m.#k.#lsn) OR #m.#k.#lsn < :lsn)"),
		ExpressionAttributeNames: map[string]string{"#m": attr, "#k": entryKey, "#lsn": "lsn", "#floor": attr + "_lsn", "#upd": AttrUpdatedAt},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":v":   av,
			":lsn": &types.AttributeValueMemberN{Value: strconv.FormatUint(lsn, 10)},
			":upd": &types.AttributeValueMemberS{Value: time.Now().UTC().Format(time.RFC3339Nano)},
		},
	}
	for attempt := 0; ; attempt++ {
		_, err = s.db.UpdateItem(ctx, in)
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			return false, nil
		}
		if err == nil {
			return true, nil
		}
		if attempt > 0 || !isMissingPath(err) {
			return false, fmt.Errorf("apply crm %s.%s for %s: %w", attr, entryKey, id, refused(err))
		}
		// The map attribute does not exist yet and DynamoDB cannot set a path below a missing
		// parent: create it empty (never replacing one a concurrent writer made), then retry.
		_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(s.table), Key: key(id),
			UpdateExpression:          aws.String("SET #m = if_not_exists(#m, :empty)"),
			ExpressionAttributeNames:  map[string]string{"#m": attr},
			ExpressionAttributeValues: map[string]types.AttributeValue{":empty": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}}},
		})
		if err != nil {
			return false, fmt.Errorf("apply crm %s.%s for %s: create map: %w", attr, entryKey, id, err)
		}
	}
}

// ClearCRMMap empties the map attribute attr of an existing profile and raises its floor
// <attr>_lsn to lsn, unless the floor is already at or past lsn (CDC: TRUNCATE of a child table).
// It never creates a profile. It reports whether the write happened.
func (s *Store) ClearCRMMap(ctx context.Context, id, attr string, lsn uint64) (bool, error) {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(s.table), Key: key(id),
		UpdateExpression:         aws.String("SET #m = :empty, #floor = :lsn, #upd = :upd"),
		ConditionExpression:      aws.String("attribute_exists(#id) AND (attribute_not_exists(#floor) OR #floor < :lsn)"),
		ExpressionAttributeNames: map[string]string{"#m": attr, "#floor": attr + "_lsn", "#id": ProfileKey, "#upd": AttrUpdatedAt},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":empty": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}},
			":lsn":   &types.AttributeValueMemberN{Value: strconv.FormatUint(lsn, 10)},
			":upd":   &types.AttributeValueMemberS{Value: time.Now().UTC().Format(time.RFC3339Nano)},
		},
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("clear crm %s for %s: %w", attr, id, err)
	}
	return true, nil
}

// isMissingPath recognises DynamoDB's refusal to set a document path below a missing map.
func isMissingPath(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationException" &&
		strings.Contains(strings.ToLower(apiErr.ErrorMessage()), "document path")
}
