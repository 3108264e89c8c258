package preferences_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/preferences"
)

var decodeNow = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func TestDecodeChangeSet_AcceptsTheDocumentedShapes(t *testing.T) {
	t.Parallel()
	cs, err := preferences.DecodeChangeSet([]byte(`{"customer_id":" c-1 ","occurred_at":"2026-11-30T11:00:00+01:00",
		"topics":{"news":"subscribed","tips":"unsubscribed"},
		"consents":[{"purpose":"email_marketing","granted":true,"source":"signup"},{"purpose":"profiling","granted":false}]}`), decodeNow)
	require.NoError(t, err)
	require.Equal(t, "c-1", cs.CustomerID)
	require.Equal(t, decodeNow, cs.OccurredAt, "UTC")
	require.Equal(t, map[string]string{"news": "subscribed", "tips": "unsubscribed"}, cs.Topics)
	require.Equal(t, []preferences.ConsentChange{{Purpose: "email_marketing", Granted: true, Source: "signup"}, {Purpose: "profiling"}}, cs.Consents)

	cs, err = preferences.DecodeChangeSet([]byte(`{"email":"Ada@Example.COM","occurred_at":"2026-11-30T10:04:00Z","consents":[{"purpose":"email_marketing","granted":false}]}`), decodeNow)
	require.NoError(t, err)
	require.Equal(t, "ada@example.com", cs.Email, "addresses are compared lower-cased")
}

func TestDecodeChangeSet_RefusesWithAReasonNamingTheField(t *testing.T) {
	t.Parallel()
	ok := `"customer_id":"c-1","occurred_at":"2026-11-30T09:00:00Z"`
	for _, tc := range []struct {
		name, body, malformed, field, reason string
	}{
		{name: "not JSON", body: `{"customer_id":`, malformed: "unexpected EOF"},
		{name: "trailing data", body: `{` + ok + `,"topics":{"a":"subscribed"}} {}`, malformed: "after top-level value"},
		{name: "array", body: `[1]`, malformed: "want a JSON object"},
		{name: "not UTF-8", body: "{\"customer_id\":\"\xff\"}", malformed: "UTF-8"},
		{name: "too large", body: `{"x":"` + strings.Repeat("a", preferences.MaxChangeSetBytes) + `"}`, malformed: "the limit is 65536"},
		{name: "no customer", body: `{"occurred_at":"2026-11-30T09:00:00Z","topics":{"a":"subscribed"}}`, reason: "missing property"},
		{name: "no changes", body: `{` + ok + `}`, reason: "missing property"},
		{name: "no occurred_at", body: `{"customer_id":"c","topics":{"a":"subscribed"}}`, reason: "occurred_at"},
		{name: "bad time", body: `{"customer_id":"c","occurred_at":"yesterday","topics":{"a":"subscribed"}}`, field: "/occurred_at", reason: "date-time"},
		{name: "future", body: `{"customer_id":"c","occurred_at":"2026-11-30T10:06:00Z","topics":{"a":"subscribed"}}`, field: "/occurred_at", reason: "ahead of the server clock"},
		{name: "bad status", body: `{` + ok + `,"topics":{"news":"maybe"}}`, field: "/topics/news", reason: "subscribed"},
		{name: "bad topic name", body: `{` + ok + `,"topics":{"News!":"subscribed"}}`, reason: "News!"},
		{name: "unknown field", body: `{` + ok + `,"topics":{"a":"subscribed"},"extra":1}`, reason: "extra"},
		{name: "granted as string", body: `{` + ok + `,"consents":[{"purpose":"p","granted":"yes"}]}`, field: "/consents/0/granted", reason: "boolean"},
		{name: "purpose twice", body: `{` + ok + `,"consents":[{"purpose":"p","granted":true},{"purpose":"p","granted":false}]}`, field: "/consents/1/purpose", reason: "given twice"},
		{name: "bad email", body: `{"email":"nope","occurred_at":"2026-11-30T09:00:00Z","topics":{"a":"subscribed"}}`, field: "/email", reason: "pattern"},
		{name: "long id", body: `{"customer_id":"` + strings.Repeat("c", 129) + `","occurred_at":"2026-11-30T09:00:00Z","topics":{"a":"subscribed"}}`, field: "/customer_id", reason: "maxLength"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := preferences.DecodeChangeSet([]byte(tc.body), decodeNow)
			require.Error(t, err)
			if tc.malformed != "" {
				require.ErrorIs(t, err, preferences.ErrMalformed)
				require.ErrorContains(t, err, tc.malformed)
				return
			}
			var ve *preferences.ValidationError
			require.ErrorAs(t, err, &ve)
			require.ErrorIs(t, err, preferences.ErrInvalidChange)
			if tc.field != "" {
				require.Equal(t, tc.field, ve.Field, ve.Error())
			}
			require.Contains(t, ve.Error(), tc.reason)
		})
	}
}

// FuzzDecodeChangeSet feeds the webhook body decoder arbitrary bytes: it must never panic, and
// whatever it accepts must satisfy the rules it promises.
func FuzzDecodeChangeSet(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c-1","occurred_at":"2026-11-30T09:00:00Z","topics":{"news":"subscribed"}}`,
		`{"email":"a@b.c","occurred_at":"2026-11-30T09:00:00Z","consents":[{"purpose":"email_marketing","granted":true,"source":"x"}]}`,
		`{"customer_id":"c","occurred_at":"2026-11-30T09:00:00Z","topics":{}}`,
		`[]`, `null`, `{"a":`, "{\"customer_id\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cs, err := preferences.DecodeChangeSet(body, decodeNow)
		if err != nil {
			require.Nil(t, cs)
			require.NotEmpty(t, err.Error())
			return
		}
		require.True(t, cs.CustomerID != "" || cs.Email != "", "a customer is named")
		require.True(t, len(cs.Topics)+len(cs.Consents) > 0, "something changes")
		require.LessOrEqual(t, len(cs.Topics), 50)
		require.LessOrEqual(t, len(cs.Consents), 50)
		require.False(t, cs.OccurredAt.After(decodeNow.Add(preferences.MaxFutureSkew)))
		for _, st := range cs.Topics {
			require.Contains(t, []string{"subscribed", "unsubscribed", "pending"}, st)
		}
	})
}
