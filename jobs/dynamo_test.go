package jobs_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/ddb"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// The emulator's real answers are decoded by ddb.Items and ddb.BatchItems, not left to the
// SDK, and give what the SDK gives: every page of a two-segment scan, its cursor, the decoded
// profiles, and a batch read of them all.
func TestDynamoProfiles_ScanPagesAreDecodedByHand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for i := range 25 {
		p := &profile.Profile{ID: fmt.Sprintf("s%02d", i), CRM: profile.CRM{Email: fmt.Sprintf("s%d@example.com", i), FirstName: "Zoë \"Z\" <b>",
			Attributes: map[string]any{"picks": []any{map[string]any{"sku": "SKU-1", "price": 4990.0, "tags": []any{"a", true, nil}}}, "n": float64(i)}}}
		item, err := profile.Encode(p)
		require.NoError(t, err)
		_, err = b.env.DynamoDB.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(b.profiles.Table()), Item: item})
		require.NoError(t, err)
	}
	seen := map[string]bool{}
	for seg := range 2 {
		var start map[string]types.AttributeValue
		for pages := 0; ; pages++ {
			require.Less(t, pages, 20)
			in := &dynamodb.ScanInput{TableName: aws.String(b.profiles.Table()), Segment: aws.Int32(int32(seg)), TotalSegments: aws.Int32(2),
				ConsistentRead: aws.Bool(true), Limit: aws.Int32(4), ExclusiveStartKey: start}
			sdk, err := b.env.DynamoDB.Scan(ctx, in)
			require.NoError(t, err)
			fast := &ddb.Items{}
			out, err := b.env.DynamoDB.Scan(ctx, in, fast.Option)
			require.NoError(t, err)
			require.True(t, fast.Decoded, "the emulator's answer is decoded by hand")
			require.Empty(t, out.Items)
			require.Equal(t, sdk.Items, fast.Items)
			require.Equal(t, sdk.LastEvaluatedKey, fast.LastKey)

			after := ""
			if k, ok := start[profile.AttrID].(*types.AttributeValueMemberS); ok {
				after = k.Value
			}
			page, err := (&jobs.DynamoProfiles{Store: b.profiles, DB: b.env.DynamoDB}).ScanPage(ctx, seg, 2, after, 4)
			require.NoError(t, err)
			require.Empty(t, page.Bad)
			require.Len(t, page.Profiles, len(sdk.Items))
			for i, p := range page.Profiles {
				want, err := profile.Decode(sdk.Items[i])
				require.NoError(t, err)
				require.Equal(t, want, p)
				require.Equal(t, "Zoë \"Z\" <b>", p.CRM.FirstName)
				seen[p.ID] = true
			}
			if len(sdk.LastEvaluatedKey) == 0 {
				require.Empty(t, page.Last)
				break
			}
			require.Equal(t, sdk.LastEvaluatedKey[profile.AttrID].(*types.AttributeValueMemberS).Value, page.Last)
			start = sdk.LastEvaluatedKey
		}
	}
	require.Len(t, seen, 25, "the two segments together read every profile once")

	// BatchGetItem's answers too.
	keys := []map[string]types.AttributeValue{}
	for id := range seen {
		keys = append(keys, map[string]types.AttributeValue{profile.AttrID: &types.AttributeValueMemberS{Value: id}})
	}
	in := &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{b.profiles.Table(): {Keys: keys, ConsistentRead: aws.Bool(true)}}}
	sdk, err := b.env.DynamoDB.BatchGetItem(ctx, in)
	require.NoError(t, err)
	require.Len(t, sdk.Responses[b.profiles.Table()], 25)
	fast := &ddb.BatchItems{}
	_, err = b.env.DynamoDB.BatchGetItem(ctx, in, fast.Option)
	require.NoError(t, err)
	require.True(t, fast.Decoded)
	require.ElementsMatch(t, sdk.Responses[b.profiles.Table()], fast.Responses[b.profiles.Table()])
}
