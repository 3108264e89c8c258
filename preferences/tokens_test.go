package preferences_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/preferences"
)

func testKey(id string, fill byte) preferences.TokenKey {
	return preferences.TokenKey{ID: id, Secret: bytes.Repeat([]byte{fill}, 32)}
}

func newTokens(t *testing.T, now *time.Time, keys ...preferences.TokenKey) *preferences.Tokens {
	t.Helper()
	tok, err := preferences.NewTokens(preferences.TokensConfig{Keys: keys, TTL: time.Hour, Now: func() time.Time { return *now }})
	require.NoError(t, err)
	return tok
}

func TestTokens_RoundTripCarriesCustomerCampaignAndTopic(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	tokens := newTokens(t, &now, testKey("k1", 1))
	for _, c := range []preferences.Claims{
		{CustomerID: "c-1042", CampaignID: 7, Topic: "newsletter"},
		{CustomerID: "ü/ß?&#", CampaignID: 0},
		{CustomerID: strings.Repeat("x", 128), CampaignID: 1 << 40, Topic: strings.Repeat("t", 64)},
	} {
		s, err := tokens.Mint(c)
		require.NoError(t, err)
		require.NotContains(t, s, "=", "URL-safe, unpadded")
		require.NotContains(t, s, "/")
		got, err := tokens.Parse(s)
		require.NoError(t, err)
		c.ExpiresAt = now.Add(time.Hour)
		require.Equal(t, c, got)
	}
	_, err := tokens.Mint(preferences.Claims{})
	require.Error(t, err, "a token needs a customer")
}

func TestTokens_RejectTamperingAnywhere(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tokens := newTokens(t, &now, testKey("k1", 1))
	s, err := tokens.Mint(preferences.Claims{CustomerID: "c-1", CampaignID: 3, Topic: "news"})
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(t, err)
	for i := range raw {
		for _, bit := range []byte{0x01, 0x80} {
			b := bytes.Clone(raw)
			b[i] ^= bit
			_, err := tokens.Parse(base64.RawURLEncoding.EncodeToString(b))
			require.ErrorIs(t, err, preferences.ErrTokenInvalid, "byte %d bit %#x", i, bit)
		}
	}
	for _, bad := range []string{"", "x", s[:len(s)-1], s + "A", "!" + s[1:], strings.Repeat("A", 5000),
		base64.RawURLEncoding.EncodeToString(raw[:len(raw)-32])} {
		_, err := tokens.Parse(bad)
		require.ErrorIs(t, err, preferences.ErrTokenInvalid, "%q", bad)
	}
	// Another customer's claims under the same MAC: the MAC covers the whole payload.
	other, err := tokens.Mint(preferences.Claims{CustomerID: "c-2", CampaignID: 3, Topic: "news"})
	require.NoError(t, err)
	o, _ := base64.RawURLEncoding.DecodeString(other)
	spliced := append(bytes.Clone(o[:len(o)-32]), raw[len(raw)-32:]...)
	_, err = tokens.Parse(base64.RawURLEncoding.EncodeToString(spliced))
	require.ErrorIs(t, err, preferences.ErrTokenInvalid)
}

func TestTokens_ExpireAfterTTL(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	tokens := newTokens(t, &now, testKey("k1", 1))
	s, err := tokens.Mint(preferences.Claims{CustomerID: "c-1"})
	require.NoError(t, err)
	now = now.Add(time.Hour - time.Second)
	_, err = tokens.Parse(s)
	require.NoError(t, err)
	now = now.Add(time.Second)
	c, err := tokens.Parse(s)
	require.ErrorIs(t, err, preferences.ErrTokenExpired)
	require.Equal(t, "c-1", c.CustomerID, "an expired but genuine token still says whose it was")
}

func TestTokens_RotateKeys(t *testing.T) {
	t.Parallel()
	now := time.Now()
	old := newTokens(t, &now, testKey("k1", 1))
	s1, err := old.Mint(preferences.Claims{CustomerID: "c-1"})
	require.NoError(t, err)

	// Rotation: the new key signs, the old one still verifies.
	rotated := newTokens(t, &now, testKey("k2", 2), testKey("k1", 1))
	s2, err := rotated.Mint(preferences.Claims{CustomerID: "c-1"})
	require.NoError(t, err)
	for _, s := range []string{s1, s2} {
		_, err := rotated.Parse(s)
		require.NoError(t, err)
	}
	_, err = old.Parse(s2)
	require.ErrorIs(t, err, preferences.ErrTokenInvalid, "a server without k2 refuses its tokens")

	// Retired: only k2 left.
	retired := newTokens(t, &now, testKey("k2", 2))
	_, err = retired.Parse(s1)
	require.ErrorIs(t, err, preferences.ErrTokenInvalid)
	_, err = retired.Parse(s2)
	require.NoError(t, err)

	// Same id, other secret: refused.
	impostor := newTokens(t, &now, testKey("k2", 9))
	_, err = impostor.Parse(s2)
	require.ErrorIs(t, err, preferences.ErrTokenInvalid)
}

func TestTokens_FormKeyIsBoundToTheToken(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tokens := newTokens(t, &now, testKey("k1", 1))
	a, _ := tokens.Mint(preferences.Claims{CustomerID: "a"})
	b, _ := tokens.Mint(preferences.Claims{CustomerID: "b"})
	require.True(t, tokens.CheckFormKey(a, tokens.FormKey(a)))
	require.False(t, tokens.CheckFormKey(a, tokens.FormKey(b)))
	require.False(t, tokens.CheckFormKey(a, ""))
	require.False(t, tokens.CheckFormKey("garbage", tokens.FormKey("garbage")))
}

func TestParseTokenKey(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for _, tc := range []struct {
		in, err string
	}{
		{"k1=" + secret, ""},
		{"k1=whsec_" + secret, ""},
		{"k1=" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 40)), ""},
		{secret, "want ID=BASE64SECRET"},
		{"bad id=" + secret, "want ID=BASE64SECRET"},
		{"k1=not base64!", "not base64"},
		{"k1=" + base64.StdEncoding.EncodeToString([]byte("short")), "at least 32"},
	} {
		k, err := preferences.ParseTokenKey(tc.in)
		if tc.err == "" {
			require.NoError(t, err, tc.in)
			require.Equal(t, "k1", k.ID)
			continue
		}
		require.ErrorContains(t, err, tc.err, tc.in)
		require.NotContains(t, err.Error(), secret, "errors never repeat the secret")
	}
}

func TestLinks_ForGivesBothURLsWithOneToken(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tokens := newTokens(t, &now, testKey("k1", 1))
	links, err := preferences.NewLinks("https://prefs.example.com/base/", tokens)
	require.NoError(t, err)
	unsub, page := links.For(12, "news", "c-9")
	tok, ok := strings.CutPrefix(unsub, "https://prefs.example.com/base/unsubscribe/")
	require.True(t, ok, unsub)
	require.Equal(t, "https://prefs.example.com/base/preferences/"+tok, page)
	c, err := tokens.Parse(tok)
	require.NoError(t, err)
	require.Equal(t, "c-9", c.CustomerID)
	require.Equal(t, int64(12), c.CampaignID)
	require.Equal(t, "news", c.Topic)
	for _, bad := range []string{"", "prefs.example.com", "ftp://x", "https://x/?a=b"} {
		_, err := preferences.NewLinks(bad, tokens)
		require.Error(t, err, bad)
	}
}
