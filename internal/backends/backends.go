package backends

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tailor-email/tailor/localstack"
)

// PrefixDefault prefixes every resource name (tables, stream, replication slot).
const PrefixDefault = "tailor_"

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// Config says where the backends are. Zero values mean: use the local stack if one runs.
type Config struct {
	// DatabaseURL is the Postgres URL (TAILOR_DATABASE_URL). Default: the local stack's.
	DatabaseURL string
	// StackDir is the local stack's directory (TAILOR_DIR). Default: found by localstack.Find.
	StackDir string
	// Prefix names resources: <prefix>profiles, <prefix>leases, <prefix>events. Default "tailor_".
	Prefix string
	// NoStack ignores any local stack: real AWS through the SDK's standard configuration.
	NoStack bool
}

// Names are the resource names derived from the prefix.
type Names struct {
	Prefix      string
	Profiles    string // DynamoDB table: one item per customer
	Leases      string // DynamoDB table: Kinesis shard leases and checkpoints
	Stream      string // Kinesis stream of behavioural events
	Slot        string // Postgres logical replication slot
	Publication string // Postgres publication for CDC
}

// NamesFor derives resource names from a prefix.
func NamesFor(prefix string) Names {
	return Names{
		Prefix:      prefix,
		Profiles:    prefix + "profiles",
		Leases:      prefix + "leases",
		Stream:      prefix + "events",
		Slot:        prefix + "cdc",
		Publication: prefix + "cdc",
	}
}

// Backends are open connections. Close releases them.
type Backends struct {
	DatabaseURL string
	Pool        *pgxpool.Pool
	AWS         aws.Config
	Kinesis     *kinesis.Client
	DynamoDB    *dynamodb.Client
	Names       Names
	// Stack is the local stack in use, nil against real AWS.
	Stack *localstack.State
}

// Open connects as cfg says. The Postgres pool is opened lazily by pgxpool, so Open succeeds
// when only AWS is reachable; callers that need Postgres get a clear error at first use.
func Open(ctx context.Context, cfg Config) (*Backends, error) {
	cfg.Prefix = cmp.Or(cfg.Prefix, PrefixDefault)
	if !prefixRE.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("prefix %q: use lower-case letters, digits and _ (starting with a letter, at most 31)", cfg.Prefix)
	}
	b := &Backends{Names: NamesFor(cfg.Prefix)}
	if !cfg.NoStack {
		dir, found := cfg.StackDir, cfg.StackDir != ""
		if !found {
			dir, found = localstack.Find()
		}
		if found {
			st, err := localstack.Load(dir)
			if err != nil && (cfg.StackDir != "" || !errors.Is(err, localstack.ErrNotRunning)) {
				return nil, err
			}
			b.Stack = st
		}
	}
	if b.Stack != nil {
		b.AWS = b.Stack.AWSConfig()
		b.DatabaseURL = cmp.Or(cfg.DatabaseURL, b.Stack.Postgres.URL)
		b.Kinesis = kinesis.NewFromConfig(b.AWS, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(b.Stack.Kinesis.URL) })
		b.DynamoDB = dynamodb.NewFromConfig(b.AWS, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(b.Stack.DynamoDB.URL) })
	} else {
		// The standard chain: env, shared config, SSO, IMDS; AWS_ENDPOINT_URL_<SERVICE> is applied
		// by the SDK itself.
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("aws configuration: %w", err)
		}
		b.AWS = awsCfg
		b.DatabaseURL = cfg.DatabaseURL
		b.Kinesis = kinesis.NewFromConfig(awsCfg)
		b.DynamoDB = dynamodb.NewFromConfig(awsCfg)
	}
	if b.DatabaseURL == "" {
		return nil, errors.New("no database: set --database-url / TAILOR_DATABASE_URL, or start the local stack with `tailor dev up`")
	}
	poolCfg, err := pgxpool.ParseConfig(b.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	b.Pool = pool
	return b, nil
}

// Close releases the connections.
func (b *Backends) Close() {
	if b.Pool != nil {
		b.Pool.Close()
	}
}
