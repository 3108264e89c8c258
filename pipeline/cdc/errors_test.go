package cdc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/profile"
)

func pgErr(code, msg string) error {
	return fmt.Errorf("cdc: replication connection: %w", &pgconn.PgError{Severity: "FATAL", Code: code, Message: msg})
}

func ddbErr(code, msg string) error {
	return fmt.Errorf("cdc: apply customers c1: apply crm c1: %w", &smithy.GenericAPIError{Code: code, Message: msg})
}

func TestPermanent_ClassifiesMisconfigurationsAndRetriesTheRest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		fix  string // "" for a transient error
	}{
		{"wrong password", pgErr("28P01", `password authentication failed for user "cdc"`), "password"},
		{"no pg_hba entry", pgErr("28000", `no pg_hba.conf entry for replication connection from host "10.0.0.7", user "cdc"`), "pg_hba.conf"},
		{"unknown role", pgErr("28000", `role "cdc" does not exist`), "user of the database URL"},
		{"no REPLICATION", pgErr("42501", "must be superuser or replication role to start walsender"), "REPLICATION"},
		{"no REPLICATION (PG 16)", pgErr("42501", "permission denied to start WAL sender"), "REPLICATION"},
		{"cannot create the publication", pgErr("42501", "must be owner of table customers"), "own those tables"},
		{"no database", pgErr("3D000", `database "crm" does not exist`), "create the database"},
		{"no table", pgErr("42P01", `relation "consents" does not exist`), "tailor migrate"},
		{"wal_level", pgErr("55000", "logical decoding requires wal_level >= logical"), "set wal_level = logical"},
		{"invalidated slot", pgErr("55000", `can no longer get changes from replication slot "tailor_cdc"`), "pg_drop_replication_slot"},
		{"out of slots", pgErr("53400", "all replication slots are in use"), "max_replication_slots"},
		{"in recovery (failing over)", pgErr("55000", "logical decoding cannot be used while in recovery"), ""},
		{"slot busy (a dying walsender)", pgErr("55006", `replication slot "tailor_cdc" is active for PID 4242`), ""},
		{"Postgres shutting down", pgErr("57P01", "terminating connection due to administrator command"), ""},
		{"Postgres starting", pgErr("57P03", "the database system is starting up"), ""},
		{"too many connections", pgErr("53300", "sorry, too many clients already"), ""},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}, ""},
		{"connection reset", fmt.Errorf("cdc: receive: %w", io.ErrUnexpectedEOF), ""},
		{"timeout", context.DeadlineExceeded, ""},
		{"profiles table missing", fmt.Errorf("scan: %w", &types.ResourceNotFoundException{Message: aws.String("Requested resource not found")}), "profiles table"},
		{"credentials refused", ddbErr("UnrecognizedClientException", "The security token included in the request is invalid."), "AWS credentials"},
		{"expression bug", ddbErr("ValidationException", `Invalid UpdateExpression: Syntax error; token: "=", near: "SET ="`), "bug"},
		{"item too big (dead-lettered)", fmt.Errorf("%w: %w", profile.ErrWriteRefused, &smithy.GenericAPIError{Code: "ValidationException", Message: "Item size to update has exceeded the maximum allowed size"}), ""},
		{"nesting too deep (dead-lettered)", fmt.Errorf("%w: %w", profile.ErrWriteRefused, ddbErr("ValidationException", "Nesting Levels have exceeded supported limits")), ""},
		{"over a profile bound (dead-lettered)", fmt.Errorf("%w: customers row c1: 70000 bytes of CRM data", profile.ErrWriteRefused), ""},
		{"throttled", ddbErr("ProvisionedThroughputExceededException", "The level of configured provisioned throughput for the table was exceeded."), ""},
		{"throttled (on demand)", ddbErr("ThrottlingException", "Rate of requests exceeds the allowed throughput."), ""},
		{"DynamoDB unavailable", ddbErr("InternalServerError", "Internal server error"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			perm := permanent(tc.err)
			if tc.fix == "" {
				require.Nil(t, perm, "a transient error must be retried")
				return
			}
			require.NotNil(t, perm, "a misconfiguration must stop CDC")
			require.Contains(t, perm.Fix, tc.fix)
			require.ErrorIs(t, perm, ErrPermanent)
			require.Error(t, errors.Unwrap(perm), "the cause stays reachable")
			require.NotEmpty(t, perm.What)
		})
	}
}

func TestPermanent_SaysWhatToFix(t *testing.T) {
	t.Parallel()
	err := checkWALLevel("replica")
	require.EqualError(t, err, `cdc: wal_level is "replica": set wal_level = logical in postgresql.conf and restart Postgres`)
	require.ErrorIs(t, err, ErrPermanent)
	require.Same(t, err, permanent(fmt.Errorf("cdc: connect: %w", err)), "a ConfigError passes through")
	require.NoError(t, checkWALLevel("logical"))

	for _, tc := range []struct {
		slotType, plugin string
		here             bool
		want             string
	}{
		{"logical", "pgoutput", true, ""},
		{"physical", "", false, `replication slot s is a physical slot: CDC needs a logical slot: drop it (SELECT pg_drop_replication_slot('s')) or choose another --prefix`},
		{"logical", "pgoutput", false, "replication slot s belongs to another database"},
		{"logical", "test_decoding", true, `replication slot s uses plugin "test_decoding": CDC needs a pgoutput slot`},
	} {
		err := checkSlot("s", tc.slotType, tc.plugin, tc.here)
		if tc.want == "" {
			require.NoError(t, err)
			continue
		}
		require.ErrorIs(t, err, ErrPermanent)
		require.Contains(t, err.Error(), tc.want)
	}
}
