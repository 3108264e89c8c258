package preferences_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/preferences"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestCheck_GivesTheFirstReasonEachRecipientIsLeftOut(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	_, err := env.Pool.Exec(ctx, `
		INSERT INTO topics (name, default_status) VALUES ('news', 'unsubscribed'), ('tips', 'subscribed');
		INSERT INTO topics (name, archived_at) VALUES ('old', now());
		INSERT INTO customers (id, email) VALUES ('ok', 'ok@example.com'), ('sup', 'Sup@Example.com'), ('supid', 'other@example.com'),
			('unsub', 'unsub@example.com'), ('norow', 'norow@example.com'), ('nocons', 'nocons@example.com'), ('denied', 'denied@example.com');
		INSERT INTO subscriptions (customer_id, topic, status) VALUES ('ok', 'news', 'subscribed'), ('sup', 'news', 'subscribed'),
			('unsub', 'news', 'unsubscribed'), ('nocons', 'news', 'subscribed'), ('denied', 'news', 'subscribed'), ('unsub', 'tips', 'unsubscribed');
		INSERT INTO consents (customer_id, purpose, granted) VALUES ('ok', 'email_marketing', true), ('sup', 'email_marketing', true),
			('unsub', 'email_marketing', true), ('norow', 'email_marketing', true), ('denied', 'email_marketing', false), ('nocons', 'profiling', true);
		INSERT INTO suppressions (email, reason, source) VALUES ('sup@example.com', 'hard_bounce', 'test');
		INSERT INTO suppressions (email, customer_id, reason, source) VALUES ('old-address@example.com', 'supid', 'unsubscribed', 'test');`)
	require.NoError(t, err)
	rs := []preferences.Recipient{{"ok", "ok@example.com"}, {"sup", "Sup@Example.com"}, {"supid", "other@example.com"}, {"unsub", "unsub@example.com"},
		{"norow", "norow@example.com"}, {"nocons", "nocons@example.com"}, {"denied", "denied@example.com"}, {"noaddr", ""}}

	got, err := preferences.Check(ctx, env.Pool, "news", rs)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"sup": preferences.ReasonSuppressed, "supid": preferences.ReasonSuppressed, "unsub": preferences.ReasonUnsubscribed,
		"norow": preferences.ReasonUnsubscribed, "nocons": preferences.ReasonNoConsent, "denied": preferences.ReasonNoConsent,
		"noaddr": preferences.ReasonNoAddress,
	}, got)

	// An opt-out topic: no row means subscribed.
	got, err = preferences.Check(ctx, env.Pool, "tips", rs)
	require.NoError(t, err)
	require.NotContains(t, got, "norow")
	require.Equal(t, preferences.ReasonUnsubscribed, got["unsub"])

	// Without a topic only the suppression list applies.
	got, err = preferences.Check(ctx, env.Pool, "", rs)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"sup": preferences.ReasonSuppressed, "supid": preferences.ReasonSuppressed, "noaddr": preferences.ReasonNoAddress}, got)

	for _, topic := range []string{"nope", "old"} {
		_, err = preferences.Check(ctx, env.Pool, topic, rs)
		require.ErrorIs(t, err, preferences.ErrUnknownTopic, topic)
	}
}
