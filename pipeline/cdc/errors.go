package cdc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tailor-email/tailor/pipeline/profile"
)

// ErrPermanent marks a failure that retrying cannot fix: Postgres, the role CDC connects as,
// the schema or DynamoDB is misconfigured. Run and Resync return such failures as a
// *ConfigError (errors.Is(err, ErrPermanent) holds) instead of retrying them.
var ErrPermanent = errors.New("cdc: permanent error")

// ConfigError is a misconfiguration that stops CDC until someone fixes it. Its message says
// what is wrong and what to do, e.g.
//
//	cdc: wal_level is "replica": set wal_level = logical in postgresql.conf and restart Postgres
type ConfigError struct {
	What string // what is wrong
	Fix  string // what to do about it
	Err  error  // the error it was found from, if any
}

func (e *ConfigError) Error() string { return "cdc: " + e.What + ": " + e.Fix }

// Unwrap returns the error the misconfiguration was found from.
func (e *ConfigError) Unwrap() error { return e.Err }

// Is makes every ConfigError match ErrPermanent.
func (e *ConfigError) Is(target error) bool { return target == ErrPermanent }

// checkWALLevel refuses a server that cannot decode logically.
func checkWALLevel(level string) error {
	if level == "logical" {
		return nil
	}
	return &ConfigError{What: fmt.Sprintf("wal_level is %q", level), Fix: "set wal_level = logical in postgresql.conf and restart Postgres"}
}

// permanent returns the misconfiguration err comes from, or nil when err may go away by itself
// (lost connections, Postgres restarting or failing over, throttling, timeouts, anything not
// known to be permanent): those are retried. It converts Postgres errors by SQLSTATE and
// DynamoDB errors by their code, at the package's edge.
func permanent(err error) *ConfigError {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return ce
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return permanentPg(pg)
	}
	if errors.Is(err, profile.ErrWriteRefused) {
		return nil // DynamoDB refuses what this row holds: the row is dead-lettered, CDC goes on
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		return permanentDynamoDB(api)
	}
	return nil
}

func permanentPg(pg *pgconn.PgError) *ConfigError {
	msg := strings.ToLower(pg.Message + " " + pg.Detail)
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(msg, x) {
				return true
			}
		}
		return false
	}
	e := &ConfigError{What: pg.Message, Err: pg}
	switch pg.Code {
	case "28P01": // invalid_password
		e.Fix = "check the user and password of the database URL (--database-url, TAILOR_DATABASE_URL)"
	case "28000": // invalid_authorization_specification
		switch {
		case has("pg_hba.conf"):
			e.Fix = `allow the connection in pg_hba.conf (CDC also opens a replication connection: it needs a line for database "replication") and reload Postgres`
		case has("not permitted to log in"):
			e.Fix = "let the role log in (ALTER ROLE ... LOGIN) or use another user in the database URL"
		default:
			e.Fix = "check the user of the database URL (--database-url, TAILOR_DATABASE_URL)"
		}
	case "42501": // insufficient_privilege
		switch {
		case has("walsender", "wal sender", "replication"):
			e.Fix = "give the role the REPLICATION attribute (ALTER ROLE ... REPLICATION, as a superuser) or use a role that has it"
		default:
			e.Fix = "CDC creates the publication of customers, subscriptions and consents: the role needs CREATE on the database and must own those tables (or create the publication as their owner)"
		}
	case "3D000": // invalid_catalog_name
		e.Fix = "create the database, or fix the database URL (--database-url, TAILOR_DATABASE_URL)"
	case "3F000", "42P01", "42809": // invalid_schema_name, undefined_table, wrong_object_type
		e.Fix = "a published table (customers, subscriptions, consents) is missing or not a table: run tailor migrate against this database"
	case "53400": // configuration_limit_exceeded
		e.Fix = "drop unused replication slots or raise max_replication_slots (and max_wal_senders) and restart Postgres"
	case "0A000": // feature_not_supported
		e.Fix = "this Postgres does not support what CDC needs (logical replication with pgoutput)"
	case "55000": // object_not_in_prerequisite_state: permanent only for the causes known here
		switch {
		case has("wal_level"):
			e.What, e.Fix = "logical decoding is off ("+pg.Message+")", "set wal_level = logical in postgresql.conf and restart Postgres"
		case has("invalidated", "can no longer get changes"):
			e.Fix = "the slot lost WAL it needed (max_slot_wal_keep_size): drop it (SELECT pg_drop_replication_slot(...)); the next tailor cdc creates it again and backfills every row"
		case has("physical replication slot", "was not created in this database"):
			e.Fix = "the slot's name is taken by another slot: drop that one or choose another --prefix"
		default:
			return nil
		}
	default:
		return nil
	}
	return e
}

func permanentDynamoDB(api smithy.APIError) *ConfigError {
	e := &ConfigError{What: "DynamoDB: " + api.ErrorCode() + ": " + api.ErrorMessage(), Err: api}
	switch api.ErrorCode() {
	case "ResourceNotFoundException":
		e.Fix = "the profiles table does not exist: start tailor cdc again (it creates the table), or check --prefix and the AWS region"
	case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
		"MissingAuthenticationTokenException", "IncompleteSignatureException":
		e.Fix = "check the AWS credentials and that they may read and write the profiles table (dynamodb:UpdateItem, dynamodb:Scan)"
	case "ValidationException":
		e.Fix = "DynamoDB refuses the request itself, not the data in it (a bug in how CDC builds it, or a column name DynamoDB cannot take): report it with this message; no change was dead-lettered"
	default:
		return nil
	}
	return e
}
