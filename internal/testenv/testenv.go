package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/localstack"
	"github.com/tailor-email/tailor/migrations"
)

var (
	mu    sync.Mutex
	stack *localstack.State
)

// Main runs a test binary's tests with a local stack: the shared one in $TAILOR_TEST_DIR when
// set, else a private attached stack that is stopped when the tests end (and dies with the
// binary if it is killed). Call it from TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
// Under -short (make unit) and while fuzzing (the coordinator and every fuzz worker) no stack is
// started: those tests need no backends, and Integration skips the ones that do.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit: it returns the tests' exit code once the stack it started (if
// any) is stopped, so a TestMain can check more after the tests (goleak.Find).
func Run(m *testing.M) int {
	flag.Parse()
	if testing.Short() || flagSet("test.fuzz") || flagSet("test.fuzzworker") {
		return m.Run()
	}
	return run(m)
}

func flagSet(name string) bool {
	f := flag.Lookup(name)
	return f != nil && f.Value.String() != "" && f.Value.String() != "false"
}

// Integration skips a test that needs the local stack under -short.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack")
	}
}

func run(m *testing.M) int {
	ctx := context.Background()
	if dir := os.Getenv("TAILOR_TEST_DIR"); dir != "" {
		st, err := localstack.Load(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testenv: TAILOR_TEST_DIR:", err)
			return 1
		}
		stack = st
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "tailor-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := localstack.Start(ctx, localstack.Config{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv: start local stack:", err)
		return 1
	}
	stack = s.State()
	code := m.Run()
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stop local stack:", err)
	}
	return code
}

// Stack returns the test binary's local stack. It skips the test under -short and fails it
// when Main did not start one.
func Stack(t testing.TB) *localstack.State {
	t.Helper()
	Integration(t)
	mu.Lock()
	defer mu.Unlock()
	require.NotNil(t, stack, "testenv: call testenv.Main from TestMain")
	return stack
}

// Env is one test's isolated slice of the stack.
type Env struct {
	*backends.Backends
	Database string
}

// New returns backends over a fresh migrated database and a fresh resource prefix. Everything
// is dropped when the test ends. Like Stack, it skips the test under -short.
func New(t testing.TB) *Env {
	t.Helper()
	st := Stack(t)
	ctx := context.Background()
	suffix := randomSuffix()
	db := "test_" + suffix
	admin, err := pgx.Connect(ctx, st.DatabaseURL("postgres"))
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+db)
	require.NoError(t, err)
	require.NoError(t, admin.Close(ctx))

	b, err := backends.Open(ctx, backends.Config{DatabaseURL: st.DatabaseURL(db), StackDir: st.Dir, Prefix: "t" + suffix + "_"})
	require.NoError(t, err)
	_, err = migrations.Up(ctx, b.Pool)
	require.NoError(t, err)
	t.Cleanup(func() {
		dropAWS(t, b)
		b.Close()
		admin, err := pgx.Connect(ctx, st.DatabaseURL("postgres"))
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		// Replication slots pin a database; drop the test's before the database itself.
		_, _ = admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", db)
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	})
	return &Env{Backends: b, Database: db}
}

// dropAWS deletes the test's Kinesis streams and DynamoDB tables (those named with its
// prefix): a stack that stays up through many test runs would otherwise reach kinesalite's
// limit of 200 shards, after which every CreateStream fails. Deletion is asynchronous in both
// emulators; a failure is logged, not fatal (the stack is the test's own or dropped anyway).
func dropAWS(t testing.TB, b *backends.Backends) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prefix := b.Names.Prefix
	var after *string
	for {
		out, err := b.Kinesis.ListStreams(ctx, &kinesis.ListStreamsInput{ExclusiveStartStreamName: after})
		if err != nil {
			t.Logf("testenv: list streams: %v", err)
			break
		}
		for _, name := range out.StreamNames {
			if strings.HasPrefix(name, prefix) {
				if _, err := b.Kinesis.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name), EnforceConsumerDeletion: aws.Bool(true)}); err != nil {
					t.Logf("testenv: delete stream %s: %v", name, err)
				}
			}
		}
		if !aws.ToBool(out.HasMoreStreams) || len(out.StreamNames) == 0 {
			break
		}
		after = aws.String(out.StreamNames[len(out.StreamNames)-1])
	}
	var start *string
	for {
		out, err := b.DynamoDB.ListTables(ctx, &dynamodb.ListTablesInput{ExclusiveStartTableName: start})
		if err != nil {
			t.Logf("testenv: list tables: %v", err)
			return
		}
		for _, name := range out.TableNames {
			if strings.HasPrefix(name, prefix) {
				if _, err := b.DynamoDB.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)}); err != nil {
					t.Logf("testenv: delete table %s: %v", name, err)
				}
			}
		}
		if out.LastEvaluatedTableName == nil {
			return
		}
		start = out.LastEvaluatedTableName
	}
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
