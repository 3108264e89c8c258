package ddb

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tailor-email/tailor/internal/ctxtime"
)

// BatchGetMax is DynamoDB's BatchGetItem limit of keys per call.
const BatchGetMax = 100

// batchGetAttempts bounds the calls for one chunk of keys while DynamoDB keeps returning some
// of them as UnprocessedKeys (throttling).
const batchGetAttempts = 10

// EnsureTable creates a pay-per-request table with a string hash key when it does not exist,
// and waits until it is active. Idempotent. It asks DescribeTable first, so a process whose IAM
// role may not create tables (only the operator's migrate may) starts against an existing one.
func EnsureTable(ctx context.Context, db *dynamodb.Client, table, hashKey string) error {
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	var nf *types.ResourceNotFoundException
	switch {
	case err == nil && desc.Table != nil && desc.Table.TableStatus == types.TableStatusActive:
		return nil
	case err != nil && !errors.As(err, &nf):
		return fmt.Errorf("describe table %s: %w", table, err)
	}
	_, err = db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(hashKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(hashKey), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create table %s: %w", table, err)
	}
	w := dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("wait for table %s: %w", table, err)
	}
	return nil
}

// BatchGetter is the part of the DynamoDB client BatchGet uses.
type BatchGetter interface {
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
}

// BatchGet reads the items of keys (string hash key attribute keyAttr) from table with
// consistent reads, 100 keys per call, retrying UnprocessedKeys with backoff, and calls fn for
// every item found (absent keys are skipped). proj, when non-nil, is applied to every call
// (ProjectionExpression and its names). Duplicate keys are read once.
func BatchGet(ctx context.Context, db BatchGetter, table, keyAttr string, keys []string, proj *Projection, fn func(map[string]types.AttributeValue) error) error {
	uniq := slices.Compact(slices.Sorted(slices.Values(keys)))
	for chunk := range slices.Chunk(uniq, BatchGetMax) {
		avs := make([]map[string]types.AttributeValue, len(chunk))
		for i, k := range chunk {
			avs[i] = map[string]types.AttributeValue{keyAttr: &types.AttributeValueMemberS{Value: k}}
		}
		ka := types.KeysAndAttributes{Keys: avs, ConsistentRead: aws.Bool(true)}
		if proj != nil {
			ka.ProjectionExpression, ka.ExpressionAttributeNames = proj.Expression, proj.Names
		}
		req := map[string]types.KeysAndAttributes{table: ka}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt >= batchGetAttempts {
				return fmt.Errorf("batch get from %s: %d keys still unprocessed after %d attempts", table, len(req[table].Keys), attempt)
			}
			if attempt > 0 {
				if err := ctxtime.Sleep(ctx, Backoff(attempt)); err != nil {
					return err
				}
			}
			fast := &BatchItems{}
			out, err := db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req}, fast.Option)
			if err != nil {
				return fmt.Errorf("batch get from %s: %w", table, err)
			}
			for _, item := range fast.Of(out, table) {
				if err := fn(item); err != nil {
					return err
				}
			}
			req = out.UnprocessedKeys
		}
	}
	return nil
}

// Projection is a ProjectionExpression with its attribute names.
type Projection struct {
	Expression *string
	Names      map[string]string
}

// Backoff is the wait before retry attempt (1, 2, ...): 50ms doubling, at most 2s.
func Backoff(attempt int) time.Duration {
	return min(time.Duration(1<<min(attempt, 6))*25*time.Millisecond, 2*time.Second)
}

// IsConditionFailed reports whether err is DynamoDB's ConditionalCheckFailedException.
func IsConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// N is a number attribute value.
func N(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// S is a string attribute value.
func S(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// Expression builds a condition and an update with feature/dynamodb/expression and returns the
// four request fields, with the condition's redundant parentheses removed (see
// FlattenCondition). cond may be nil.
func Expression(upd *expression.UpdateBuilder, cond *expression.ConditionBuilder) (update, condition *string, names map[string]string, values map[string]types.AttributeValue, err error) {
	b := expression.NewBuilder()
	if upd != nil {
		b = b.WithUpdate(*upd)
	}
	if cond != nil {
		b = b.WithCondition(*cond)
	}
	e, err := b.Build()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if c := e.Condition(); c != nil {
		condition = aws.String(FlattenCondition(*c))
	}
	return e.Update(), condition, e.Names(), e.Values(), nil
}

// leafCondition matches one parenthesised comparison or function call without nested
// parentheses in its operands: `(#0 < :1)`, `(attribute_exists (#0.#1))`, `(size (#0) < :2)`.
var leafCondition = regexp.MustCompile(`\(((?:attribute_(?:not_)?exists|size|attribute_type|begins_with|contains) \([^()]*\)(?: (?:<|<=|=|<>|>|>=) :\w+)?|[#\w.\[\]]+ (?:<|<=|=|<>|>|>=) [:#\w.\[\]]+)\)`)

// FlattenCondition removes the parentheses the expression builder puts around every
// comparison and function call. They are redundant (a comparison binds tighter than AND, OR
// and NOT), but dynalite's parser backtracks on each level of them: an entry write's condition
// took 13.7 ms there as the builder writes it and 1.2 ms flattened (real DynamoDB does not
// care). Parentheses that group AND and OR are kept.
func FlattenCondition(cond string) string {
	return leafCondition.ReplaceAllString(cond, "$1")
}
