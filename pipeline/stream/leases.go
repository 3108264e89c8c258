package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tailor-email/tailor/internal/ddb"
)

// LeaseKey is the lease table's partition key attribute: the shard id.
const LeaseKey = "shard_id"

// CheckpointShardEnd is the checkpoint of a shard that was read to its end (a closed parent
// after a split or merge). Its children may start once every parent has it.
const CheckpointShardEnd = "SHARD_END"

// ErrLeaseLost is returned when a conditional lease write fails because another owner took the
// lease (or it changed under us): the caller must stop processing the shard.
var ErrLeaseLost = errors.New("lease lost")

// Lease is one shard's row in the lease table, modelled on the KCL's: the owner holds it until
// ExpiresAt (Unix ms) unless it renews; every ownership change or renewal bumps Counter, and
// every conditional write names the Counter it last saw, so two owners never both succeed.
type Lease struct {
	ShardID    string   `dynamodbav:"shard_id"`
	Owner      string   `dynamodbav:"lease_owner,omitempty"`
	Counter    int64    `dynamodbav:"lease_counter"`
	ExpiresAt  int64    `dynamodbav:"expires_at"`
	Checkpoint string   `dynamodbav:"checkpoint,omitempty"` // last processed sequence number, or SHARD_END
	Parents    []string `dynamodbav:"parents,stringset,omitempty"`
	// CheckpointedAt is when Checkpoint last wrote (Unix ms; 0 never).
	CheckpointedAt int64 `dynamodbav:"checkpointed_at,omitempty"`
	// IteratorAgeMillis is the owner's last MillisBehindLatest of the shard (how far its reads
	// are behind the stream's tip), written with each renewal at LagReportedAt (Unix ms; 0
	// never), so that `tailor status` sees every shard's lag without scraping each consumer.
	IteratorAgeMillis int64 `dynamodbav:"iterator_age_ms"`
	LagReportedAt     int64 `dynamodbav:"lag_reported_at,omitempty"`
}

// Finished reports whether the shard was read to its end.
func (l Lease) Finished() bool { return l.Checkpoint == CheckpointShardEnd }

// Held reports whether an owner holds the lease at now.
func (l Lease) Held(now time.Time) bool { return l.Owner != "" && l.ExpiresAt > now.UnixMilli() }

// LeaseTable reads and writes shard leases in one DynamoDB table with conditional writes only.
// Safe for concurrent use.
type LeaseTable struct {
	db    *dynamodb.Client
	table string
}

// NewLeaseTable returns a lease table over table.
func NewLeaseTable(db *dynamodb.Client, table string) *LeaseTable {
	return &LeaseTable{db: db, table: table}
}

// EnsureTable creates the lease table when missing.
func (t *LeaseTable) EnsureTable(ctx context.Context) error {
	return ddb.EnsureTable(ctx, t.db, t.table, LeaseKey)
}

// List returns every lease (consistent scan).
func (t *LeaseTable) List(ctx context.Context) ([]Lease, error) {
	var out []Lease
	p := dynamodb.NewScanPaginator(t.db, &dynamodb.ScanInput{TableName: aws.String(t.table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list leases: %w", err)
		}
		var ls []Lease
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &ls); err != nil {
			return nil, fmt.Errorf("decode leases: %w", err)
		}
		out = append(out, ls...)
	}
	return out, nil
}

// Create adds a free lease for a shard unless one exists. It reports whether it created it.
func (t *LeaseTable) Create(ctx context.Context, shardID string, parents []string) (bool, error) {
	item, err := attributevalue.MarshalMap(Lease{ShardID: shardID, Parents: parents})
	if err != nil {
		return false, fmt.Errorf("encode lease %s: %w", shardID, err)
	}
	_, err = t.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(t.table), Item: item,
		ConditionExpression:      aws.String("attribute_not_exists(#k)"),
		ExpressionAttributeNames: map[string]string{"#k": LeaseKey},
	})
	if ddb.IsConditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create lease %s: %w", shardID, err)
	}
	return true, nil
}

// Lease table attribute names (Lease's dynamodbav tags).
const (
	attrOwner      = "lease_owner"
	attrCounter    = "lease_counter"
	attrExpiresAt  = "expires_at"
	attrCheckpoint = "checkpoint"
	attrCkptAt     = "checkpointed_at"
	attrAge        = "iterator_age_ms"
	attrLagAt      = "lag_reported_at"
)

// update runs a conditional update on a lease the caller saw as seen: the write succeeds only if
// the lease's counter is still seen.Counter (and, with mustOwn, owner is seen.Owner).
// ErrLeaseLost when the condition fails.
func (t *LeaseTable) update(ctx context.Context, seen Lease, upd expression.UpdateBuilder, mustOwn bool) error {
	cond := expression.Name(attrCounter).Equal(expression.Value(seen.Counter))
	if mustOwn {
		cond = cond.And(expression.Name(attrOwner).Equal(expression.Value(seen.Owner)))
	}
	u, c, names, values, err := ddb.Expression(&upd, &cond)
	if err != nil {
		return fmt.Errorf("update lease %s: %w", seen.ShardID, err)
	}
	_, err = t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(t.table),
		Key:                       map[string]types.AttributeValue{LeaseKey: ddb.S(seen.ShardID)},
		UpdateExpression:          u,
		ConditionExpression:       c,
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	if ddb.IsConditionFailed(err) {
		return fmt.Errorf("%w: %s", ErrLeaseLost, seen.ShardID)
	}
	if err != nil {
		return fmt.Errorf("update lease %s: %w", seen.ShardID, err)
	}
	return nil
}

// Take makes owner the holder of a lease last seen as seen (free, expired, or held by another
// owner: a steal), valid for d. It fails with ErrLeaseLost if anyone changed the lease since.
func (t *LeaseTable) Take(ctx context.Context, seen Lease, owner string, d time.Duration, now time.Time) (Lease, error) {
	l := seen
	l.Owner, l.Counter, l.ExpiresAt = owner, seen.Counter+1, now.Add(d).UnixMilli()
	upd := expression.Set(expression.Name(attrOwner), expression.Value(owner)).
		Set(expression.Name(attrCounter), expression.Value(l.Counter)).
		Set(expression.Name(attrExpiresAt), expression.Value(l.ExpiresAt))
	return l, t.update(ctx, seen, upd, false)
}

// Renew extends a held lease by d. With held.LagReportedAt set it also records
// held.IteratorAgeMillis (the owner's lag report rides on the renewal: no extra write).
func (t *LeaseTable) Renew(ctx context.Context, held Lease, d time.Duration, now time.Time) (Lease, error) {
	l := held
	l.Counter, l.ExpiresAt = held.Counter+1, now.Add(d).UnixMilli()
	upd := expression.Set(expression.Name(attrCounter), expression.Value(l.Counter)).
		Set(expression.Name(attrExpiresAt), expression.Value(l.ExpiresAt))
	if held.LagReportedAt > 0 {
		upd = upd.Set(expression.Name(attrAge), expression.Value(held.IteratorAgeMillis)).
			Set(expression.Name(attrLagAt), expression.Value(held.LagReportedAt))
	}
	return l, t.update(ctx, held, upd, true)
}

// Checkpoint records seq (a sequence number or CheckpointShardEnd) on a held lease. Call it
// only after the effects of every record up to seq are durable.
func (t *LeaseTable) Checkpoint(ctx context.Context, held Lease, seq string) (Lease, error) {
	l := held
	l.Checkpoint, l.CheckpointedAt = seq, time.Now().UnixMilli()
	upd := expression.Set(expression.Name(attrCheckpoint), expression.Value(seq)).
		Set(expression.Name(attrCkptAt), expression.Value(l.CheckpointedAt))
	return l, t.update(ctx, held, upd, true)
}

// Release gives a held lease up (graceful handoff): another owner may take it at once.
func (t *LeaseTable) Release(ctx context.Context, held Lease) error {
	upd := expression.Set(expression.Name(attrCounter), expression.Value(held.Counter+1)).
		Set(expression.Name(attrExpiresAt), expression.Value(0)).
		Remove(expression.Name(attrOwner))
	return t.update(ctx, held, upd, true)
}
