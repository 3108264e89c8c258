package tracking_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/tracking"
)

func master(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func key(t testing.TB, id string, b byte) tracking.Key {
	t.Helper()
	k, err := tracking.DeriveKey(id, master(b))
	require.NoError(t, err)
	return k
}

func newTokens(t testing.TB, now func() time.Time, keys ...tracking.Key) *tracking.Tokens {
	t.Helper()
	tok, err := tracking.NewTokens(tracking.TokensConfig{Keys: keys, Now: now})
	require.NoError(t, err)
	return tok
}

var click = tracking.Claims{Kind: tracking.KindClick, CampaignID: 42, CustomerID: "cust-7", Occurrence: "2026-12-01T10:00:00Z",
	URL: "https://shop.example.com/p/1?utm_source=mail&x=\"q\""}

func TestTokens_RoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tok := newTokens(t, func() time.Time { return now }, key(t, "k1", 1))
	for _, c := range []tracking.Claims{
		click,
		{Kind: tracking.KindOpen, CampaignID: 1, CustomerID: "c", Occurrence: ""},
		{Kind: tracking.KindClick, CampaignID: 0, CustomerID: strings.Repeat("x", tracking.MaxIDLen), URL: "http://a.b/" + strings.Repeat("p", tracking.MaxURLLen-11)},
	} {
		s, err := tok.Mint(c)
		require.NoError(t, err)
		require.Less(t, len(s), tracking.MaxTokenLen)
		_, err = base64.RawURLEncoding.DecodeString(s)
		require.NoError(t, err, "URL-safe base64 without padding")
		got, err := tok.Parse(s)
		require.NoError(t, err)
		c.ExpiresAt = now.Add(tracking.TokenTTLDefault)
		require.Equal(t, c, got)
	}
}

func TestTokens_MintRefusesBadClaims(t *testing.T) {
	t.Parallel()
	tok := newTokens(t, nil, key(t, "k1", 1))
	for name, c := range map[string]tracking.Claims{
		"no kind":         {CampaignID: 1, CustomerID: "c"},
		"no customer":     {Kind: tracking.KindOpen, CampaignID: 1},
		"long customer":   {Kind: tracking.KindOpen, CampaignID: 1, CustomerID: strings.Repeat("x", tracking.MaxIDLen+1)},
		"click no url":    {Kind: tracking.KindClick, CampaignID: 1, CustomerID: "c"},
		"click mailto":    {Kind: tracking.KindClick, CampaignID: 1, CustomerID: "c", URL: "mailto:a@b.c"},
		"click js":        {Kind: tracking.KindClick, CampaignID: 1, CustomerID: "c", URL: "javascript:alert(1)"},
		"click no host":   {Kind: tracking.KindClick, CampaignID: 1, CustomerID: "c", URL: "https:///x"},
		"click long url":  {Kind: tracking.KindClick, CampaignID: 1, CustomerID: "c", URL: "https://a.b/" + strings.Repeat("p", tracking.MaxURLLen)},
		"click space":     {Kind: tracking.KindClick, CampaignID: 1, CustomerID: "c", URL: "https://a.b/x y"},
		"open with url":   {Kind: tracking.KindOpen, CampaignID: 1, CustomerID: "c", URL: "https://a.b/"},
		"negative campgn": {Kind: tracking.KindOpen, CampaignID: -1, CustomerID: "c"},
	} {
		_, err := tok.Mint(c)
		require.Error(t, err, name)
	}
}

// Every single-byte change of a token, in its bytes or in its text, is refused.
func TestTokens_RefuseEveryFlippedByte(t *testing.T) {
	t.Parallel()
	tok := newTokens(t, nil, key(t, "k1", 1))
	s, err := tok.Mint(click)
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(t, err)
	for i := range raw {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(raw)
			b[i] ^= mask
			_, err := tok.Parse(base64.RawURLEncoding.EncodeToString(b))
			require.ErrorIs(t, err, tracking.ErrTokenInvalid, "byte %d ^ %#x", i, mask)
		}
	}
	for i := range len(s) {
		for _, c := range []byte{'A', '_', '-', '.', '%'} {
			if s[i] == c {
				continue
			}
			b := []byte(s)
			b[i] = c
			_, err := tok.Parse(string(b))
			// The last character carries spare bits that some replacements leave equal after
			// decoding; the token then means the same bytes, which is no forgery.
			if err == nil {
				got, _ := base64.RawURLEncoding.DecodeString(string(b))
				require.Equal(t, raw, got, "char %d -> %q accepted with different bytes", i, c)
				continue
			}
			require.ErrorIs(t, err, tracking.ErrTokenInvalid, "char %d -> %q", i, c)
		}
	}
	for _, bad := range []string{"", "a", s[:len(s)-1], s + "A", s[1:], strings.Repeat("A", tracking.MaxTokenLen+1)} {
		_, err := tok.Parse(bad)
		require.ErrorIs(t, err, tracking.ErrTokenInvalid, "%.40q", bad)
	}
}

func TestTokens_RefuseWrongAndForeignKeys(t *testing.T) {
	t.Parallel()
	k1, k1other, k2 := key(t, "k1", 1), key(t, "k1", 2), key(t, "k2", 3)
	s, err := newTokens(t, nil, k1).Mint(click)
	require.NoError(t, err)
	_, err = newTokens(t, nil, k1other).Parse(s)
	require.ErrorIs(t, err, tracking.ErrTokenInvalid, "same key id, another secret")
	_, err = newTokens(t, nil, k2).Parse(s)
	require.ErrorIs(t, err, tracking.ErrTokenInvalid, "unknown key id")

	// Rotation: a new key signs, the old one still verifies.
	rotated := newTokens(t, nil, k2, k1)
	_, err = rotated.Parse(s)
	require.NoError(t, err)
	s2, err := rotated.Mint(click)
	require.NoError(t, err)
	_, err = newTokens(t, nil, k1).Parse(s2)
	require.ErrorIs(t, err, tracking.ErrTokenInvalid, "signed by k2, which the old service does not know")
}

// The tracking key is not the preference-link secret it derives from: a token signed with the
// master secret itself is refused.
func TestDeriveKey_SeparatesFromMaster(t *testing.T) {
	t.Parallel()
	k := key(t, "k1", 1)
	require.NotEqual(t, master(1), k.Secret)
	require.Len(t, k.Secret, 32)
	again := key(t, "k1", 1)
	require.Equal(t, k.Secret, again.Secret, "deterministic: every process derives the same key")
	s, err := newTokens(t, nil, tracking.Key{ID: "k1", Secret: master(1)}).Mint(click)
	require.NoError(t, err)
	_, err = newTokens(t, nil, k).Parse(s)
	require.ErrorIs(t, err, tracking.ErrTokenInvalid)

	_, err = tracking.DeriveKey("k1", master(1)[:31])
	require.Error(t, err)
	_, err = tracking.DeriveKey("bad id!", master(1))
	require.Error(t, err)
}

func TestTokens_Expire(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tok, err := tracking.NewTokens(tracking.TokensConfig{Keys: []tracking.Key{key(t, "k1", 1)}, TTL: time.Hour, Now: clock})
	require.NoError(t, err)
	s, err := tok.Mint(click)
	require.NoError(t, err)
	now = now.Add(59 * time.Minute)
	_, err = tok.Parse(s)
	require.NoError(t, err)
	now = now.Add(time.Minute)
	c, err := tok.Parse(s)
	require.ErrorIs(t, err, tracking.ErrTokenExpired)
	require.Equal(t, click.URL, c.URL, "an expired token's claims are still returned (a click still redirects)")
}

func TestParseTrack(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]tracking.Track{
		"": {}, "opens": {Opens: true}, "clicks": {Clicks: true}, "opens,clicks": {Opens: true, Clicks: true},
		" Clicks , opens ": {Opens: true, Clicks: true},
	} {
		got, err := tracking.ParseTrack(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"open", "opens,links", ",", "opens,"} {
		_, err := tracking.ParseTrack(in)
		require.ErrorIs(t, err, tracking.ErrUnknownTrack, in)
		require.ErrorContains(t, err, "want opens, clicks or both", in)
	}
	require.Equal(t, "opens,clicks", tracking.Track{Opens: true, Clicks: true}.String())
	require.Equal(t, []string{}, tracking.Track{}.Values())
}
