package preferences

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Token errors. Both mean the link shows no data; they differ only in what the page tells the
// recipient (a tampered or unknown link, or one that is too old).
var (
	ErrTokenInvalid = errors.New("preference link is not valid")
	ErrTokenExpired = errors.New("preference link has expired")
)

// Defaults and bounds of tokens.
const (
	// TokenTTLDefault is how long a link in a message works: long enough for mail read weeks
	// later, short enough that a forwarded or leaked link stops working.
	TokenTTLDefault = 90 * 24 * time.Hour
	// TokenKeyMinBytes is the shortest secret a TokenKey may have.
	TokenKeyMinBytes = 32
	tokenVersion     = 1
	maxTokenLen      = 1024
)

// tokenContext separates these MACs from any other use of the same secret.
const tokenContext = "tailor.preferences.token.v1\x00"

// Claims is what a preference token carries: who the message went to, from which campaign,
// and the campaign's topic ("" for none), which scopes a one-click unsubscribe.
type Claims struct {
	CustomerID string
	CampaignID int64
	Topic      string
	ExpiresAt  time.Time // whole seconds
}

// TokenKey is one signing key. ID names it inside each token so that verification picks the
// right key without trying all.
type TokenKey struct {
	ID     string
	Secret []byte
}

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// ParseTokenKey parses "ID=SECRET" where SECRET is standard or URL-safe base64 of at least
// TokenKeyMinBytes bytes (a whsec_ prefix is allowed and ignored), as flags take it.
func ParseTokenKey(s string) (TokenKey, error) {
	id, secret, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok || !keyIDRE.MatchString(id) {
		return TokenKey{}, fmt.Errorf("token key: want ID=BASE64SECRET with an ID of letters, digits, _ or - (got %q)", redact(s))
	}
	secret = strings.TrimPrefix(secret, "whsec_")
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(secret); err == nil {
			break
		}
	}
	if err != nil {
		return TokenKey{}, fmt.Errorf("token key %s: the secret is not base64", id)
	}
	if len(raw) < TokenKeyMinBytes {
		return TokenKey{}, fmt.Errorf("token key %s: the secret has %d bytes, want at least %d (e.g. 'tailor webhook secret')", id, len(raw), TokenKeyMinBytes)
	}
	return TokenKey{ID: id, Secret: raw}, nil
}

// redact keeps an error message from repeating a secret: only a plausible key id is shown.
func redact(s string) string {
	if id, _, ok := strings.Cut(s, "="); ok && keyIDRE.MatchString(id) {
		return id + "=…"
	}
	return "…"
}

// TokensConfig configures Tokens. Zero values mean defaults.
type TokensConfig struct {
	// Keys sign and verify tokens: the first signs, every one verifies (rotation: put a new key
	// first everywhere, keep the old ones until TTL has passed, then drop them). Required.
	Keys []TokenKey
	// TTL is how long a minted token is valid. Default TokenTTLDefault.
	TTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Tokens mints and verifies preference tokens. Safe for concurrent use.
//
// A token is base64url (no padding) of a payload followed by its MAC:
//
//	payload = version (1 byte, 1) | len(key id) (1 byte) | key id | expiry (8 bytes, Unix
//	          seconds, big-endian) | campaign id (uvarint) | len(customer id) (uvarint) |
//	          customer id | len(topic) (uvarint) | topic
//	mac     = HMAC-SHA256(key secret, "tailor.preferences.token.v1\x00" | payload), 32 bytes
//
// so that any change to the customer, campaign, topic, expiry or key id invalidates it, and
// it carries nothing a recipient could not already see (their id and the campaign's).
type Tokens struct {
	keys map[string][]byte
	sign TokenKey
	ttl  time.Duration
	now  func() time.Time
}

// NewTokens validates cfg and returns the token service.
func NewTokens(cfg TokensConfig) (*Tokens, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("preferences: TokensConfig.Keys is empty: give at least one key")
	}
	if cfg.TTL < 0 {
		return nil, errors.New("preferences: TokensConfig.TTL must not be negative")
	}
	t := &Tokens{keys: map[string][]byte{}, sign: cfg.Keys[0], ttl: cmp.Or(cfg.TTL, TokenTTLDefault), now: cfg.Now}
	if t.now == nil {
		t.now = time.Now
	}
	for i, k := range cfg.Keys {
		if !keyIDRE.MatchString(k.ID) {
			return nil, fmt.Errorf("preferences: TokensConfig.Keys[%d]: id %q: use 1 to 32 letters, digits, _ or -", i, k.ID)
		}
		if len(k.Secret) < TokenKeyMinBytes {
			return nil, fmt.Errorf("preferences: TokensConfig.Keys[%d] (%s): secret of %d bytes, want at least %d", i, k.ID, len(k.Secret), TokenKeyMinBytes)
		}
		if _, dup := t.keys[k.ID]; dup {
			return nil, fmt.Errorf("preferences: TokensConfig.Keys: id %q given twice", k.ID)
		}
		t.keys[k.ID] = k.Secret
	}
	return t, nil
}

// Mint returns a token for c, signed with the first key, expiring TTL from now (c.ExpiresAt
// is ignored).
func (t *Tokens) Mint(c Claims) (string, error) {
	if c.CustomerID == "" || len(c.CustomerID) > 128 || len(c.Topic) > 128 || c.CampaignID < 0 {
		return "", fmt.Errorf("mint token: customer id of 1 to 128 bytes, topic of at most 128 and a campaign id >= 0 needed")
	}
	exp := t.now().Add(t.ttl).Unix()
	b := make([]byte, 0, 64+len(c.CustomerID)+len(c.Topic))
	b = append(b, tokenVersion, byte(len(t.sign.ID)))
	b = append(b, t.sign.ID...)
	b = binary.BigEndian.AppendUint64(b, uint64(exp))
	b = binary.AppendUvarint(b, uint64(c.CampaignID))
	b = binary.AppendUvarint(b, uint64(len(c.CustomerID)))
	b = append(b, c.CustomerID...)
	b = binary.AppendUvarint(b, uint64(len(c.Topic)))
	b = append(b, c.Topic...)
	b = append(b, mac(t.sign.Secret, b)...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func mac(secret, payload []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(tokenContext))
	h.Write(payload)
	return h.Sum(nil)
}

// Parse verifies a token and returns its claims: ErrTokenInvalid for anything malformed,
// signed with an unknown key or altered (the MAC is compared in constant time), ErrTokenExpired
// for a genuine token past its expiry.
func (t *Tokens) Parse(s string) (Claims, error) {
	if len(s) > maxTokenLen {
		return Claims{}, ErrTokenInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 2+sha256.Size {
		return Claims{}, ErrTokenInvalid
	}
	payload, sum := raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	if payload[0] != tokenVersion || len(payload) < 2+int(payload[1]) {
		return Claims{}, ErrTokenInvalid
	}
	secret, ok := t.keys[string(payload[2:2+int(payload[1])])]
	if !ok || !hmac.Equal(sum, mac(secret, payload)) {
		return Claims{}, ErrTokenInvalid
	}
	rest := payload[2+int(payload[1]):]
	if len(rest) < 8 {
		return Claims{}, ErrTokenInvalid
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(rest)), 0)
	rest = rest[8:]
	campaign, n := binary.Uvarint(rest)
	if n <= 0 || campaign > 1<<62 {
		return Claims{}, ErrTokenInvalid
	}
	rest = rest[n:]
	customer, rest, ok := lenPrefixed(rest)
	if !ok || customer == "" {
		return Claims{}, ErrTokenInvalid
	}
	topic, rest, ok := lenPrefixed(rest)
	if !ok || len(rest) != 0 {
		return Claims{}, ErrTokenInvalid
	}
	c := Claims{CustomerID: customer, CampaignID: int64(campaign), Topic: topic, ExpiresAt: exp.UTC()}
	if !t.now().Before(exp) {
		return c, ErrTokenExpired
	}
	return c, nil
}

func lenPrefixed(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}

// Paths of the links, under the public URL.
const (
	PagePath        = "/preferences/"
	UnsubscribePath = "/unsubscribe/"
)

// Links builds the URLs a rendered message carries; its For method is jobs.Config.Links.
type Links struct {
	// PublicURL is where recipients reach `tailor serve` (scheme and host, optionally a path
	// prefix), e.g. https://prefs.example.com.
	PublicURL string
	Tokens    *Tokens
}

// NewLinks checks that publicURL is an absolute http(s) URL and returns the link builder.
func NewLinks(publicURL string, tokens *Tokens) (*Links, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("public URL %q: want an absolute http(s) URL without query, e.g. https://prefs.example.com", publicURL)
	}
	if tokens == nil {
		return nil, errors.New("preference links need token keys")
	}
	return &Links{PublicURL: strings.TrimRight(publicURL, "/"), Tokens: tokens}, nil
}

// For mints one token for the recipient of a campaign's message and returns the one-click
// unsubscribe URL (List-Unsubscribe) and the preference page URL. Both carry the same token.
// It returns empty URLs when no token can be minted (an over-long id), so the message renders
// without links rather than failing; jobs.Config.Links has this signature.
func (l *Links) For(campaignID int64, topic, customerID string) (unsubscribe, preferences string) {
	tok, err := l.Tokens.Mint(Claims{CustomerID: customerID, CampaignID: campaignID, Topic: topic})
	if err != nil {
		return "", ""
	}
	return l.PublicURL + UnsubscribePath + tok, l.PublicURL + PagePath + tok
}

// formContext separates form keys from token MACs.
const formContext = "tailor.preferences.form.v1\x00"

// FormKey returns the CSRF key the preference page's form carries for a token Parse accepted:
// an HMAC of the token under the key that signed it, so only a page this server rendered for
// that link can be posted back (a cross-site form does not know it).
func (t *Tokens) FormKey(token string) string {
	secret := t.secretOf(token)
	if secret == nil {
		return ""
	}
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(formContext))
	h.Write([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// CheckFormKey reports, in constant time, whether key is FormKey(token).
func (t *Tokens) CheckFormKey(token, key string) bool {
	want := t.FormKey(token)
	return want != "" && hmac.Equal([]byte(want), []byte(key))
}

// secretOf returns the secret of the key that signed token, nil when unknown.
func (t *Tokens) secretOf(token string) []byte {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < 2 || len(raw) < 2+int(raw[1]) {
		return nil
	}
	return t.keys[string(raw[2:2+int(raw[1])])]
}
