package testenv_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/ddb"
	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/stream"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// A test's streams and tables go when it ends, so a long-lived stack never fills up.
func TestNew_DropsTheTestsStreamsAndTables(t *testing.T) {
	var env *testenv.Env
	t.Run("a test", func(t *testing.T) {
		env = testenv.New(t)
		require.NoError(t, stream.EnsureStream(t.Context(), env.Kinesis, env.Names.Stream, 2))
		require.NoError(t, ddb.EnsureTable(t.Context(), env.DynamoDB, env.Names.Profiles, "customer_id"))
	})
	// The clients are closed with the test; fresh ones over the same stack look.
	b := testenv.New(t)
	ctx := context.Background()
	s, err := b.Kinesis.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(env.Names.Stream)})
	var nf *ktypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		require.NoError(t, err)
		require.Equal(t, ktypes.StreamStatusDeleting, s.StreamDescriptionSummary.StreamStatus)
	}
	tb, err := b.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(env.Names.Profiles)})
	var tnf *dtypes.ResourceNotFoundException
	if !errors.As(err, &tnf) {
		require.NoError(t, err)
		require.Equal(t, dtypes.TableStatusDeleting, tb.Table.TableStatus)
	}
}
