package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/jobs"
)

// The River periodic job of tailor work deletes the bodies whose final ack is older than the
// retention, and only those.
func TestRetention_PeriodicJobDeletesBodiesPastTheRetention(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var camp int64
	require.NoError(t, b.env.Pool.QueryRow(ctx, `INSERT INTO campaigns (name, template_name, template_version, template_files, segment, status, started_at)
		VALUES ('r', 't', 1, '{}', 'true', 'rendered', now()) RETURNING id`).Scan(&camp))
	_, err := b.env.Pool.Exec(ctx, `INSERT INTO rendered_messages (campaign_id, customer_id, email, subject, html, text_body, headers, not_before, delivery, acked_at)
		VALUES ($1, 'old', 'old@example.com', 's', '<p>old</p>', 'old', '{}', now(), 'sent', now() - interval '8 days'),
		       ($1, 'new', 'new@example.com', 's', '<p>new</p>', 'new', '{}', now(), 'sent', now() - interval '1 day'),
		       ($1, 'open', 'open@example.com', 's', '<p>open</p>', 'open', '{}', now(), NULL, NULL)`, camp)
	require.NoError(t, err)

	client, err := jobs.NewClient(jobs.Config{Pool: b.env.Pool, Profiles: &jobs.DynamoProfiles{Store: b.profiles, DB: b.env.DynamoDB},
		RetentionInterval: time.Second})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = client.Stop(stopCtx)
	})
	deadline := time.Now().Add(45 * time.Second)
	for {
		var deleted bool
		require.NoError(t, b.env.Pool.QueryRow(ctx, `SELECT body_deleted_at IS NOT NULL FROM rendered_messages WHERE customer_id = 'old'`).Scan(&deleted))
		if deleted {
			break
		}
		require.True(t, time.Now().Before(deadline), "the retention job never ran")
		time.Sleep(100 * time.Millisecond)
	}
	rows, err := b.env.Pool.Query(ctx, `SELECT customer_id, html, body_sha256 IS NOT NULL, body_deleted_at IS NOT NULL FROM rendered_messages ORDER BY customer_id`)
	require.NoError(t, err)
	got := map[string][3]any{}
	for rows.Next() {
		var id, html string
		var hashed, deleted bool
		require.NoError(t, rows.Scan(&id, &html, &hashed, &deleted))
		got[id] = [3]any{html, hashed, deleted}
	}
	require.NoError(t, rows.Err())
	require.Equal(t, map[string][3]any{
		"old":  {"", true, true},
		"new":  {"<p>new</p>", true, false},
		"open": {"<p>open</p>", true, false},
	}, got)
}
