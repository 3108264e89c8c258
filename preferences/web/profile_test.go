package web_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/testenv/cdcrun"
	"github.com/tailor-email/tailor/internal/testenv/eventpath"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// A webhook change reaches the DynamoDB profile through CDC: the subscription and the consent
// land on the profile with the webhook as their source. The time it took is logged
// (BenchmarkWebhook measures it under load: webhook.to_profile_p99_ms).
func TestWebhook_ChangeReachesTheProfileThroughCDC(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := t.Context()
	profiles := s.startCDC(t)

	body := []byte(`{"customer_id":"c-2","occurred_at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","source":"crm-prefs",
		"topics":{"tips":"unsubscribed"},"consents":[{"purpose":"email_marketing","granted":true}]}`)
	sent := time.Now()
	r := s.webhook(t, body, signed(t, secret1, "msg_profile", sent, body))
	require.Equal(t, http.StatusOK, r.code, r.body)
	answered := time.Since(sent)
	var p *profile.Profile
	var err error
	eventpath.Eventually(t, 60*time.Second, func() (bool, string) {
		p, err = profiles.Get(ctx, "c-2")
		if err != nil {
			return false, err.Error()
		}
		return p.Subscriptions["tips"].Status == profile.StatusUnsubscribed && p.Consented("email_marketing"), fmt.Sprintf("%+v %+v", p.Subscriptions, p.Consents)
	})
	t.Logf("webhook answered in %s, on the profile after %s", answered.Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
	require.Equal(t, "crm-prefs", p.Subscriptions["tips"].Source)
	require.Equal(t, "crm-prefs", p.Consents["email_marketing"].Source)
	require.Equal(t, profile.StatusSubscribed, p.Subscriptions["news"].Status, "other topics stay")
}

// startCDC runs CDC for the server's database until the test ends and returns the profiles
// once the backfill has brought c-1 and c-2 in.
func (s *server) startCDC(t *testing.T) *profile.Store {
	t.Helper()
	ctx := t.Context()
	profiles, err := app.Profiles(ctx, s.env.Backends)
	require.NoError(t, err)
	cdcrun.Start(t, s.env, nil)
	eventpath.Eventually(t, 60*time.Second, func() (bool, string) {
		got, err := profiles.BatchGet(ctx, []string{"c-1", "c-2"})
		return err == nil && len(got) == 2 && got["c-1"].Subscribed("news"), fmt.Sprint("profiles not from CDC yet: ", err)
	})
	return profiles
}
