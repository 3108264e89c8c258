package localstack_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/localstack"
)

func start(t *testing.T, cfg localstack.Config) *localstack.Stack {
	t.Helper()
	cfg.Log = t.Logf
	s, err := localstack.Start(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

// pidAlive reports whether pid is a live, non-zombie process.
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] != 'Z'
		}
	}
	return true
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for pidAlive(pid) {
		require.False(t, time.Now().After(deadline), "pid %d still running", pid)
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStack_DetachedUpDownTwice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".tailor")
	ctx := context.Background()
	for round := 1; round <= 2; round++ {
		s, err := localstack.Start(ctx, localstack.Config{Dir: dir, Detached: true, Log: t.Logf})
		require.NoError(t, err, "round %d", round)
		st := s.State()
		require.Empty(t, st.Check(ctx), "round %d: all services answer", round)

		// Up again while running is a no-op that returns the same stack.
		again, err := localstack.Start(ctx, localstack.Config{Dir: dir, Detached: true})
		require.NoError(t, err)
		require.Equal(t, st.Postgres.PID, again.State().Postgres.PID)
		require.Equal(t, st.Kinesis.URL, again.State().Kinesis.URL)

		// Another command finds it through the state file alone.
		loaded, err := localstack.Load(dir)
		require.NoError(t, err)
		require.Equal(t, st.Postgres.URL, loaded.Postgres.URL)
		info, err := os.Stat(filepath.Join(dir, localstack.StateFileName))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "state file holds a password")

		require.NoError(t, localstack.Down(ctx, dir))
		for _, pid := range []int{st.Postgres.PID, st.Kinesis.PID, st.DynamoDB.PID} {
			waitGone(t, pid)
		}
		_, err = localstack.Load(dir)
		require.ErrorIs(t, err, localstack.ErrNotRunning)
		require.NoError(t, localstack.Down(ctx, dir), "down is idempotent")
	}
}

func TestStack_AttachedDiesWithParent(t *testing.T) {
	// A child test binary starts an attached stack and is then killed; its stack must die too.
	if os.Getenv("TAILOR_CHILD_STACK_DIR") != "" {
		s, err := localstack.Start(context.Background(), localstack.Config{Dir: os.Getenv("TAILOR_CHILD_STACK_DIR")})
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		st := s.State()
		fmt.Printf("PIDS %d %d %d\nHOME %s\n", st.Postgres.PID, st.Kinesis.PID, st.DynamoDB.PID, st.Postgres.Home)
		time.Sleep(time.Hour)
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir()
	out, err := os.CreateTemp(t.TempDir(), "out")
	require.NoError(t, err)
	child := &os.Process{}
	attr := &os.ProcAttr{Env: append(os.Environ(), "TAILOR_CHILD_STACK_DIR="+dir), Files: []*os.File{nil, out, out}}
	child, err = os.StartProcess(exe, []string{exe, "-test.run=^TestStack_AttachedDiesWithParent$"}, attr)
	require.NoError(t, err)
	var pids [3]int
	deadline := time.Now().Add(90 * time.Second)
	for {
		b, _ := os.ReadFile(out.Name())
		if n, _ := fmt.Sscanf(string(findLine(b, "PIDS")), "PIDS %d %d %d", &pids[0], &pids[1], &pids[2]); n == 3 {
			break
		}
		require.NotContains(t, string(b), "ERR")
		require.False(t, time.Now().After(deadline), "child never started its stack: %s", b)
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range pids {
		require.True(t, pidAlive(pid))
	}
	require.NoError(t, child.Signal(syscall.SIGKILL))
	_, _ = child.Wait()
	for _, pid := range pids {
		waitGone(t, pid)
	}
	// The killed child could not remove its cluster's data directory; the test does.
	b, _ := os.ReadFile(out.Name())
	home := string(findLine(b, "HOME "))[len("HOME "):]
	require.Contains(t, home, "tailor-pg-")
	require.NoError(t, os.RemoveAll(home))
}

func findLine(b []byte, prefix string) []byte {
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		line := b[:i]
		if len(line) >= len(prefix) && string(line[:len(prefix)]) == prefix {
			return line
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return nil
}

func TestStack_KinesisRoundTrip(t *testing.T) {
	for _, emu := range []string{localstack.EmulatorKinesalite, localstack.EmulatorKinesisMock} {
		t.Run(emu, func(t *testing.T) {
			t.Parallel()
			st := start(t, localstack.Config{Dir: t.TempDir(), KinesisEmulator: emu}).State()
			require.Equal(t, emu, st.Kinesis.Emulator)
			ctx := context.Background()
			kc := kinesis.NewFromConfig(st.AWSConfig(), func(o *kinesis.Options) { o.BaseEndpoint = aws.String(st.Kinesis.URL) })
			_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("roundtrip"), ShardCount: aws.Int32(1)})
			require.NoError(t, err)
			require.NoError(t, kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
				Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("roundtrip")}, 30*time.Second))
			put, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("roundtrip"), PartitionKey: aws.String("c1"), Data: []byte(`{"hello":"kinesis"}`)})
			require.NoError(t, err)
			it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("roundtrip"), ShardId: put.ShardId, ShardIteratorType: kintypes.ShardIteratorTypeTrimHorizon})
			require.NoError(t, err)
			got, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
			require.NoError(t, err)
			require.Len(t, got.Records, 1)
			require.Equal(t, `{"hello":"kinesis"}`, string(got.Records[0].Data))
			require.Equal(t, *put.SequenceNumber, *got.Records[0].SequenceNumber)
		})
	}
}

func TestStack_DynamoConditionalUpdate(t *testing.T) {
	t.Parallel()
	st := start(t, localstack.Config{Dir: t.TempDir()}).State()
	ctx := context.Background()
	dc := dynamodb.NewFromConfig(st.AWSConfig(), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(st.DynamoDB.URL) })
	_, err := dc.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("versions"),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	require.NoError(t, err)
	require.NoError(t, dynamodb.NewTableExistsWaiter(dc, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond }).
		Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("versions")}, 30*time.Second))
	update := func(version int) error {
		_, err := dc.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String("versions"),
			Key:                       map[string]ddbtypes.AttributeValue{"id": &ddbtypes.AttributeValueMemberS{Value: "a"}},
			UpdateExpression:          aws.String("SET #v = :v"),
			ConditionExpression:       aws.String("attribute_not_exists(#v) OR #v < :v"),
			ExpressionAttributeNames:  map[string]string{"#v": "version"},
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":v": &ddbtypes.AttributeValueMemberN{Value: fmt.Sprint(version)}},
		})
		return err
	}
	require.NoError(t, update(2))
	var ccf *ddbtypes.ConditionalCheckFailedException
	require.True(t, errors.As(update(1), &ccf), "an older version must be refused")
	require.NoError(t, update(3))
	item, err := dc.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("versions"), Key: map[string]ddbtypes.AttributeValue{"id": &ddbtypes.AttributeValueMemberS{Value: "a"}}})
	require.NoError(t, err)
	require.Equal(t, "3", item.Item["version"].(*ddbtypes.AttributeValueMemberN).Value)
}

func TestStack_PostgresIsLogicalAndLoopback(t *testing.T) {
	t.Parallel()
	st := start(t, localstack.Config{Dir: t.TempDir()}).State()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, st.Postgres.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var wal, listen string
	require.NoError(t, conn.QueryRow(ctx, "SHOW wal_level").Scan(&wal))
	require.NoError(t, conn.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen))
	require.Equal(t, "logical", wal)
	require.Equal(t, "127.0.0.1", listen)
	require.Contains(t, st.Postgres.Version, "15")
}

func TestStack_DockerBackend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok, why := localstack.DockerAvailable(ctx); !ok {
		t.Skipf("LocalStack through testcontainers needs a Docker engine and %s; the npm emulators cover these tests here", why)
	}
	st := start(t, localstack.Config{Dir: t.TempDir(), Backend: localstack.BackendDocker, ReadyTimeout: 5 * time.Minute}).State()
	require.Equal(t, localstack.EmulatorDocker, st.Kinesis.Emulator)
	require.Empty(t, st.Check(context.Background()))
}

// A client that gives up mid-request (a cancelled context) must not kill the shared emulator.
func TestStack_EmulatorsSurviveAbortedRequests(t *testing.T) {
	t.Parallel()
	st := start(t, localstack.Config{Dir: t.TempDir()}).State()
	for _, endpoint := range []string{st.DynamoDB.URL, st.Kinesis.URL} {
		for range 3 {
			conn, err := net.Dial("tcp", strings.TrimPrefix(endpoint, "http://"))
			require.NoError(t, err)
			_, err = fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 1000\r\n\r\n{\"Lim")
			require.NoError(t, err)
			require.NoError(t, conn.Close())
		}
	}
	// The crash this guards against follows the close by a few milliseconds; keep asking for a
	// while so a late one is seen too.
	for i := range 10 {
		time.Sleep(200 * time.Millisecond)
		require.Empty(t, st.Check(context.Background()), "both emulators still answer (check %d)", i)
	}
}
