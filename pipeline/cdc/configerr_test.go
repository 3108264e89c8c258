package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// runUntilConfigError runs CDC and returns the *ConfigError it stops with. It fails the test
// if CDC is still retrying after a minute (RetryDelay is 100ms in tests: that is many retries).
func runUntilConfigError(t *testing.T, cfg cdc.Config, store cdc.Store) *cdc.ConfigError {
	t.Helper()
	c, err := cdc.New(cfg, store)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = c.Run(ctx)
	require.NoError(t, ctx.Err(), "CDC kept retrying a misconfiguration")
	require.ErrorIs(t, err, cdc.ErrPermanent)
	var ce *cdc.ConfigError
	require.ErrorAs(t, err, &ce)
	require.False(t, c.Active())
	return ce
}

// editURL returns raw changed by edit.
func editURL(t *testing.T, raw string, edit func(*url.URL)) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	edit(u)
	return u.String()
}

func TestCDC_StopsWithAConfigErrorWhenAPublishedTableIsMissing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.exec(t, `DROP TABLE consents`)
	ce := runUntilConfigError(t, f.cfg, f.store)
	require.Contains(t, ce.What, `relation "consents" does not exist`)
	require.Contains(t, ce.Error(), "run tailor migrate against this database")
}

func TestCDC_StopsWithAConfigErrorForARoleWithoutReplication(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	// A role that may create the publication (it owns the tables) but not replicate.
	role := "norepl_" + f.env.Database
	f.exec(t, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'pw' NOREPLICATION`, role))
	t.Cleanup(func() {
		for _, sql := range []string{"REASSIGN OWNED BY " + role + " TO CURRENT_USER", "DROP OWNED BY " + role, "DROP ROLE " + role} {
			_, _ = f.env.Pool.Exec(ctx, sql)
		}
	})
	f.exec(t, fmt.Sprintf(`GRANT CREATE ON DATABASE %s TO %s`, f.env.Database, role))
	for _, table := range cdc.Tables {
		f.exec(t, fmt.Sprintf(`ALTER TABLE %s OWNER TO %s`, table, role))
	}
	f.cfg.DatabaseURL = editURL(t, f.cfg.DatabaseURL, func(u *url.URL) { u.User = url.UserPassword(role, "pw") })

	ce := runUntilConfigError(t, f.cfg, f.store)
	require.Contains(t, ce.What, "replication")
	require.Contains(t, ce.Fix, "REPLICATION attribute")
	var n int
	require.NoError(t, f.env.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pubname = $1`, f.cfg.Publication).Scan(&n))
	require.Equal(t, 1, n, "the role got as far as creating the publication")
}

func TestCDC_StopsWithAConfigErrorOnAWrongDatabaseURL(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct {
		name      string
		edit      func(*url.URL)
		what, fix string
	}{
		{"wrong password", func(u *url.URL) { u.User = url.UserPassword(u.User.Username(), "wrong") },
			"password authentication failed", "password of the database URL"},
		{"no such database", func(u *url.URL) { u.Path += "_nosuch" }, "does not exist", "create the database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.cfg
			cfg.DatabaseURL = editURL(t, cfg.DatabaseURL, tc.edit)
			ce := runUntilConfigError(t, cfg, f.store)
			require.Contains(t, ce.What, tc.what)
			require.Contains(t, ce.Fix, tc.fix)
		})
	}
}

func TestCDC_StopsWithAConfigErrorWhenTheSlotBelongsToAnotherPlugin(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.exec(t, `SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, f.cfg.Slot)
	ce := runUntilConfigError(t, f.cfg, f.store)
	require.Equal(t, fmt.Sprintf(`replication slot %s uses plugin "test_decoding"`, f.cfg.Slot), ce.What)
	require.Contains(t, ce.Fix, "pg_drop_replication_slot('"+f.cfg.Slot+"')")
}

func TestCDC_StopsWithAConfigErrorWhenTheProfilesTableIsMissing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('n1', 'n1@example.com')`)
	_, err := f.env.DynamoDB.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(f.store.Table())})
	require.NoError(t, err)
	gone := dynamodb.NewTableNotExistsWaiter(f.env.DynamoDB, func(o *dynamodb.TableNotExistsWaiterOptions) { o.MinDelay = 100 * time.Millisecond })
	require.NoError(t, gone.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(f.store.Table())}, time.Minute))
	ce := runUntilConfigError(t, f.cfg, f.store) // the backfill writes n1
	require.Contains(t, ce.What, "ResourceNotFoundException")
	require.Contains(t, ce.Fix, "profiles table does not exist")
}

// invalidStore refuses every customers write as DynamoDB refuses a malformed request (what
// profile.Store returns then: the API error, not ErrWriteRefused).
type invalidStore struct{ *profile.Store }

func (invalidStore) ApplyCRM(context.Context, string, uint64, map[string]any, []string) (bool, error) {
	return false, fmt.Errorf("apply crm: %w",
		&smithy.GenericAPIError{Code: "ValidationException", Message: `Invalid UpdateExpression: Syntax error; token: "=", near: "SET ="`})
}

func TestCDC_StopsOnAnInvalidRequestInsteadOfDeadLetteringIt(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	f.cfg.DeadLetters = deadletter.NewStore(f.env.Pool)
	f.exec(t, `INSERT INTO customers (id, email) VALUES ('v1', 'v1@example.com')`)
	ce := runUntilConfigError(t, f.cfg, invalidStore{f.store})
	require.Contains(t, ce.What, "Invalid UpdateExpression")
	require.Contains(t, ce.Fix, "no change was dead-lettered")
	var api smithy.APIError
	require.True(t, errors.As(ce, &api), "the DynamoDB error stays reachable")
	var n int
	require.NoError(t, f.env.Pool.QueryRow(ctx, `SELECT count(*) FROM dead_letters WHERE source = $1`, cdc.DeadLetterSource).Scan(&n))
	require.Zero(t, n)
}
