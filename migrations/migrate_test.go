package migrations_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestRenderedMessages_CampaignReference: the foreign key's rules without a per-insert check
// (migrations 009 and 010): no message moves to another campaign, deleting a campaign deletes
// its messages, and the render jobs' protocol (record a batch, then update the campaign's row
// in the same transaction, as count-recorded in jobs/queries.sql does) never leaves a message
// without its campaign: a delete that comes while a batch is recorded waits for it and takes
// the batch along, and a batch recorded after the delete finds no campaign row to update.
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
	messages := func() []string {
		rows, err := env.Pool.Query(ctx, `SELECT customer_id || ':' || subject FROM rendered_messages ORDER BY customer_id`)
		require.NoError(t, err)
		left, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return left
	}
	a, b := newCampaign(), newCampaign()
	_, err := env.Pool.Exec(ctx, `INSERT INTO rendered_messages (campaign_id, customer_id, email) VALUES ($1, 'x', 'x@example.com'), ($2, 'y', 'y@example.com'), ($2, 'w', 'w@example.com')`, a, b)
	require.NoError(t, err)
	_, err = env.Pool.Exec(ctx, `UPDATE rendered_messages SET campaign_id = $1 WHERE customer_id = 'y'`, a)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "23503", pgErr.Code, pgErr.Message)
	_, err = env.Pool.Exec(ctx, `UPDATE rendered_messages SET subject = 'still here' WHERE campaign_id = $1`, a)
	require.NoError(t, err)
	_, err = env.Pool.Exec(ctx, `DELETE FROM campaigns WHERE id = $1`, b)
	require.NoError(t, err)
	require.Equal(t, []string{"x:still here"}, messages(), "campaign b's messages went with it")

	// A render batch of campaign c is being recorded when c is deleted: the delete waits for the
	// batch's transaction and deletes its messages too.
	c := newCampaign()
	record := func(tx pgx.Tx, campaign int64, customer string) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"rendered_messages"}, []string{"campaign_id", "customer_id", "email"},
			pgx.CopyFromRows([][]any{{campaign, customer, customer + "@example.com"}}))
		require.NoError(t, err)
		var status string
		return tx.QueryRow(ctx, `UPDATE campaigns SET processed = processed + 1 WHERE id = $1 RETURNING status`, campaign).Scan(&status)
	}
	tx, err := env.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, record(tx, c, "r"))
	deleted := make(chan error, 1)
	go func() {
		_, err := env.Pool.Exec(ctx, `DELETE FROM campaigns WHERE id = $1`, c)
		deleted <- err
	}()
	waiting, until := false, time.Now().Add(30*time.Second)
	for !waiting {
		require.True(t, time.Now().Before(until), "the delete never waited for the batch's row lock")
		require.NoError(t, env.Pool.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM campaigns%'`).Scan(&waiting))
	}
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, <-deleted)
	require.Equal(t, []string{"x:still here"}, messages(), "the batch went with its campaign")

	// A batch recorded after its campaign was deleted finds no row to update: the render job's
	// transaction fails and records nothing.
	tx, err = env.Pool.Begin(ctx)
	require.NoError(t, err)
	require.ErrorIs(t, record(tx, c, "s"), pgx.ErrNoRows)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, []string{"x:still here"}, messages())
}

// A rendered newsletter's body is compressed with lz4 and stays in its row (migration 013);
// one that still does not fit after compression goes out of line, as before.
func TestRenderedMessages_BodiesCompressedInline(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	var campaign int64
	require.NoError(t, env.Pool.QueryRow(ctx, `INSERT INTO campaigns (name, template_name, template_version, template_files, segment)
		VALUES ('c', 't', 1, '{}', 'true') RETURNING id`).Scan(&campaign))
	var b strings.Builder
	for i := range 120 { // ~11 KB of markup that compresses as a newsletter does (~3 KB)
		fmt.Fprintf(&b, `<tr><td style="padding:16px 32px;">SKU-%05d %x %x</td></tr>`+"\n", i*37, uint32(i*i*7919+12345)*2654435761, uint32(i*31+7)*40503)
	}
	html := b.String()
	incompressible := make([]byte, 12<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range incompressible {
		incompressible[i] = byte('!' + r.IntN(90))
	}
	_, err := env.Pool.Exec(ctx, `INSERT INTO rendered_messages (campaign_id, customer_id, email, html, text_body)
		VALUES ($1, 'a', 'a@example.com', $2, 'Hi'), ($1, 'b', 'b@example.com', $3, 'Hi')`, campaign, html, string(incompressible))
	require.NoError(t, err)
	var method string
	var stored int64
	require.NoError(t, env.Pool.QueryRow(ctx, `SELECT pg_column_compression(html), pg_column_size(html) FROM rendered_messages WHERE customer_id = 'a'`).Scan(&method, &stored))
	require.Equal(t, "lz4", method)
	require.Less(t, stored, int64(len(html)/2), "compressed")
	require.Greater(t, stored, int64(2100), "past the default toast_tuple_target, where it went out of line")
	var chunks int64
	var toast string // rendered_messages' TOAST table
	require.NoError(t, env.Pool.QueryRow(ctx, `SELECT t.relname FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid
		WHERE c.relname = 'rendered_messages' AND c.relnamespace = 'public'::regnamespace`).Scan(&toast))
	require.NoError(t, env.Pool.QueryRow(ctx, `SELECT count(DISTINCT chunk_id) FROM pg_toast.`+pgx.Identifier{toast}.Sanitize()).Scan(&chunks))
	require.Equal(t, int64(1), chunks, "only the incompressible body is in the TOAST table")
}
