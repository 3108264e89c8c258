package migrations_test

import (
	"context"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/migrations"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestUp_IsIdempotentAndCreatesSchema(t *testing.T) {
	t.Parallel()
	env := testenv.New(t) // already migrated once
	ctx := context.Background()
	again, err := migrations.Up(ctx, env.Pool)
	require.NoError(t, err)
	require.Empty(t, again, "a second run applies nothing")
	v, err := migrations.Current(ctx, env.Pool)
	require.NoError(t, err)
	require.Equal(t, migrations.Latest(), v)

	for _, table := range []string{"customers", "campaigns", "rendered_messages", "dead_letters", "river_job"} {
		var n int
		require.NoError(t, env.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = $1", table).Scan(&n))
		require.Equal(t, 1, n, table)
	}
	// rendered_messages is unique per (campaign, customer).
	var campaign int64
	require.NoError(t, env.Pool.QueryRow(ctx, `INSERT INTO campaigns (name, template_name, template_version, template_files, segment)
		VALUES ('c', 't', 1, '{}', 'true') RETURNING id`).Scan(&campaign))
	_, err = env.Pool.Exec(ctx, "INSERT INTO rendered_messages (campaign_id, customer_id, email) VALUES ($1, 'a', 'a@example.com')", campaign)
	require.NoError(t, err)
	_, err = env.Pool.Exec(ctx, "INSERT INTO rendered_messages (campaign_id, customer_id, email) VALUES ($1, 'a', 'a@example.com')", campaign)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "23505", pgErr.Code)
}

func TestUp_FreshDatabaseReportsEverything(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	// Empty the database to see a fresh run report everything it applies, River's and ours.
	_, err := env.Pool.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`)
	require.NoError(t, err)
	applied, err := migrations.Up(ctx, env.Pool)
	require.NoError(t, err)
	var ours []int
	river := 0
	for _, a := range applied {
		switch a.Component {
		case "tailor":
			ours = append(ours, a.Version)
		case "river":
			river++
		}
	}
	require.Positive(t, river, "River's migrations run first")
	require.Equal(t, "tailor", applied[len(applied)-1].Component)
	require.Equal(t, fileVersions(t), ours, "every app migration, once, in order")
	require.Equal(t, migrations.Latest(), ours[len(ours)-1])
	v, err := migrations.Current(ctx, env.Pool)
	require.NoError(t, err)
	require.Equal(t, migrations.Latest(), v)
}

// fileVersions lists the NNN of every NNN_name.sql here, in order. Numbers may have gaps while
// parallel branches each add theirs.
func fileVersions(t *testing.T) []int {
	t.Helper()
	paths, err := filepath.Glob("*.sql")
	require.NoError(t, err)
	var out []int
	for _, p := range paths {
		num, _, ok := strings.Cut(p, "_")
		require.True(t, ok, p)
		v, err := strconv.Atoi(num)
		require.NoError(t, err, p)
		out = append(out, v)
	}
	sort.Ints(out)
	return out
}

// TestRenderedMessages_CampaignReference: migration 009 keeps the foreign key's rules once per
// statement: a message of an unknown campaign is refused (also in a COPY and in a batch that
// names a known one besides), no message moves to another campaign, and deleting a campaign
// deletes its messages.
func TestRenderedMessages_CampaignReference(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	newCampaign := func() int64 {
		var id int64
		require.NoError(t, env.Pool.QueryRow(ctx, `INSERT INTO campaigns (name, template_name, template_version, template_files, segment)
			VALUES ('c', 't', 1, '{}', 'true') RETURNING id`).Scan(&id))
		return id
	}
	a, b := newCampaign(), newCampaign()
	refused := func(err error) {
		t.Helper()
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr)
		require.Equal(t, "23503", pgErr.Code, pgErr.Message)
	}
	_, err := env.Pool.Exec(ctx, `INSERT INTO rendered_messages (campaign_id, customer_id, email) VALUES ($1, 'x', 'x@example.com'), ($2, 'y', 'y@example.com')`, a, b+1000)
	refused(err)
	_, err = env.Pool.CopyFrom(ctx, pgx.Identifier{"rendered_messages"}, []string{"campaign_id", "customer_id", "email"},
		pgx.CopyFromRows([][]any{{b + 1000, "z", "z@example.com"}}))
	refused(err)
	_, err = env.Pool.Exec(ctx, `INSERT INTO rendered_messages (campaign_id, customer_id, email) VALUES ($1, 'x', 'x@example.com'), ($2, 'y', 'y@example.com'), ($2, 'w', 'w@example.com')`, a, b)
	require.NoError(t, err)
	_, err = env.Pool.Exec(ctx, `UPDATE rendered_messages SET campaign_id = $1 WHERE customer_id = 'y'`, a)
	refused(err)
	_, err = env.Pool.Exec(ctx, `UPDATE rendered_messages SET subject = 'still here' WHERE campaign_id = $1`, a)
	require.NoError(t, err)

	_, err = env.Pool.Exec(ctx, `DELETE FROM campaigns WHERE id = $1`, b)
	require.NoError(t, err)
	var left []string
	rows, err := env.Pool.Query(ctx, `SELECT customer_id || ':' || subject FROM rendered_messages ORDER BY customer_id`)
	require.NoError(t, err)
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"x:still here"}, left, "campaign b's messages went with it")
}
