package tracking

import (
	"cmp"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Token errors. A Handler records nothing for either; an expired click still redirects (the
// target is signed, and a link in an old message should keep working).
var (
	ErrTokenInvalid = errors.New("tracking link is not valid")
	ErrTokenExpired = errors.New("tracking link has expired")
)

// Defaults and bounds of tokens.
const (
	// TokenTTLDefault is how long a tracking token records hits: mail is opened months later.
	TokenTTLDefault = 180 * 24 * time.Hour
	// KeyMinBytes is the shortest master secret DeriveKey takes.
	KeyMinBytes = 32
	// MaxURLLen is the longest click target a token carries (the events' limit on urls);
	// longer links are left untracked.
	MaxURLLen = 2048
	// MaxIDLen bounds the customer id and the occurrence a token carries.
	MaxIDLen = 128
	// MaxTokenLen bounds a token in a request path; a minted one is always shorter.
	MaxTokenLen = 4096

	tokenVersion = 1
	macLen       = 16 // HMAC-SHA256 truncated to 128 bits (as RFC 4868 does): links stay short
	keyLen       = 32
)

// keyLabel and macContext separate tracking keys and MACs from every other use of the secret.
const (
	keyLabel   = "tailor.tracking.key.v1"
	macContext = "tailor.tracking.token.v1\x00"
)

// Kind is what a token tracks.
type Kind byte

// Kinds of tokens; the byte is part of the signed payload.
const (
	KindOpen  Kind = 'o'
	KindClick Kind = 'c'
)

func (k Kind) String() string {
	switch k {
	case KindOpen:
		return "open"
	case KindClick:
		return "click"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Key is one tracking key: ID names it inside each token so verification picks it without
// trying all.
type Key struct {
	ID     string
	Secret []byte
}

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// DeriveKey derives the tracking key of a preference-link key (preferences.TokenKey's ID and
// Secret) with HKDF-SHA256 and a label of its own: same id, so rotating the preference keys
// rotates the tracking keys, and a separate secret, so neither kind of token can stand in for
// the other.
func DeriveKey(id string, master []byte) (Key, error) {
	if !keyIDRE.MatchString(id) {
		return Key{}, fmt.Errorf("tracking key id %q: use 1 to 32 letters, digits, _ or -", id)
	}
	if len(master) < KeyMinBytes {
		return Key{}, fmt.Errorf("tracking key %s: secret of %d bytes, want at least %d", id, len(master), KeyMinBytes)
	}
	secret, err := hkdf.Key(sha256.New, master, nil, keyLabel, keyLen)
	if err != nil {
		return Key{}, fmt.Errorf("tracking key %s: %w", id, err)
	}
	return Key{ID: id, Secret: secret}, nil
}

// Claims is what a token carries: which message (campaign, customer, occurrence), the kind,
// for a click the target URL, and the expiry.
type Claims struct {
	Kind       Kind
	CampaignID int64
	CustomerID string
	Occurrence string // "" for a batch campaign's message
	URL        string // a click's target; "" for an open
	ExpiresAt  time.Time
}

// TokensConfig configures Tokens. Zero values mean defaults.
type TokensConfig struct {
	// Keys sign and verify: the first signs, every one verifies (rotation: put a new key first
	// everywhere, keep the old ones while their tokens should work). Required.
	Keys []Key
	// TTL is how long a minted token records hits. Default TokenTTLDefault (180 days).
	TTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Tokens mints and verifies tracking tokens. Safe for concurrent use.
//
// A token is base64url (no padding) of a payload followed by its MAC:
//
//	payload = version (1 byte, 1) | len(key id) (1 byte) | key id | kind (1 byte, 'o' or 'c') |
//	          expiry (uvarint, Unix seconds) | campaign id (uvarint) | customer id | occurrence |
//	          url (each a uvarint length and the bytes; url empty for an open)
//	mac     = HMAC-SHA256(key, "tailor.tracking.token.v1\x00" | payload), first 16 bytes
//
// Any change to a byte of it makes Parse refuse it; the version byte lets a later format
// coexist with this one.
type Tokens struct {
	keys map[string][]byte
	sign Key
	macs sync.Pool // keyed HMACs of the signing key: a render mints a token per link
	ttl  time.Duration
	now  func() time.Time
}

// NewTokens validates cfg and returns the token service.
func NewTokens(cfg TokensConfig) (*Tokens, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("tracking: TokensConfig.Keys is empty: give at least one key")
	}
	if cfg.TTL < 0 {
		return nil, errors.New("tracking: TokensConfig.TTL must not be negative")
	}
	t := &Tokens{keys: map[string][]byte{}, sign: cfg.Keys[0], ttl: cmp.Or(cfg.TTL, TokenTTLDefault), now: cfg.Now}
	t.macs.New = func() any { return &minter{h: hmac.New(sha256.New, t.sign.Secret), buf: make([]byte, 0, 256)} }
	if t.now == nil {
		t.now = time.Now
	}
	for i, k := range cfg.Keys {
		if !keyIDRE.MatchString(k.ID) {
			return nil, fmt.Errorf("tracking: TokensConfig.Keys[%d]: id %q: use 1 to 32 letters, digits, _ or -", i, k.ID)
		}
		if len(k.Secret) < KeyMinBytes {
			return nil, fmt.Errorf("tracking: TokensConfig.Keys[%d] (%s): secret of %d bytes, want at least %d", i, k.ID, len(k.Secret), KeyMinBytes)
		}
		if _, dup := t.keys[k.ID]; dup {
			return nil, fmt.Errorf("tracking: TokensConfig.Keys: id %q given twice", k.ID)
		}
		t.keys[k.ID] = k.Secret
	}
	return t, nil
}

// Mint returns a token for c signed with the first key, expiring TTL from now (c.ExpiresAt is
// ignored). A click needs an http(s) URL of at most MaxURLLen bytes; ids are at most MaxIDLen.
func (t *Tokens) Mint(c Claims) (string, error) {
	b, err := t.AppendMint(nil, c)
	return string(b), err
}

// minter is the scratch of one mint: a keyed HMAC of the signing key and a payload buffer.
type minter struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// AppendMint is Mint appending the token to dst (the rewriter writes it straight into the
// message) and allocating nothing of its own once warm.
func (t *Tokens) AppendMint(dst []byte, c Claims) ([]byte, error) {
	switch {
	case c.Kind != KindOpen && c.Kind != KindClick:
		return dst, fmt.Errorf("tracking: mint: unknown kind %v", c.Kind)
	case c.CampaignID < 0 || c.CustomerID == "" || len(c.CustomerID) > MaxIDLen || len(c.Occurrence) > MaxIDLen:
		return dst, fmt.Errorf("tracking: mint: a campaign id >= 0, a customer id of 1 to %d bytes and an occurrence of at most %d needed", MaxIDLen, MaxIDLen)
	case c.Kind == KindClick && !validTarget(c.URL):
		return dst, fmt.Errorf("tracking: mint: a click needs an http(s) URL of at most %d bytes", MaxURLLen)
	case c.Kind == KindOpen && c.URL != "":
		return dst, errors.New("tracking: mint: an open carries no URL")
	}
	exp := t.now().Add(t.ttl).Unix()
	m := t.macs.Get().(*minter)
	defer t.macs.Put(m)
	b := append(m.buf[:0], tokenVersion, byte(len(t.sign.ID)))
	b = append(b, t.sign.ID...)
	b = append(b, byte(c.Kind))
	b = binary.AppendUvarint(b, uint64(exp))
	b = binary.AppendUvarint(b, uint64(c.CampaignID))
	for _, s := range [...]string{c.CustomerID, c.Occurrence, c.URL} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	m.h.Reset()
	m.h.Write([]byte(macContext))
	m.h.Write(b)
	b = append(b, m.h.Sum(m.sum[:0])[:macLen]...)
	m.buf = b
	return base64.RawURLEncoding.AppendEncode(dst, b), nil
}

func mac(secret, payload []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(macContext))
	h.Write(payload)
	return h.Sum(nil)[:macLen]
}

// validTarget reports whether u is a URL a click may redirect to: absolute http or https with
// a host, no longer than MaxURLLen, no control characters or spaces.
func validTarget(u string) bool {
	if u == "" || len(u) > MaxURLLen {
		return false
	}
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] == 0x7f {
			return false
		}
	}
	rest, ok := cutPrefixFold(u, "https://")
	if !ok {
		rest, ok = cutPrefixFold(u, "http://")
	}
	if !ok {
		return false
	}
	host, _, _ := strings.Cut(rest, "/")
	host, _, _ = strings.Cut(host, "?")
	host, _, _ = strings.Cut(host, "#")
	return host != "" && !strings.Contains(host, "\\")
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// Parse verifies a token and returns its claims: ErrTokenInvalid for anything malformed,
// signed with an unknown key or altered (the MAC is compared in constant time, before any
// field is read), ErrTokenExpired, with the claims, for a genuine token past its expiry.
func (t *Tokens) Parse(s string) (Claims, error) {
	if len(s) > MaxTokenLen {
		return Claims{}, ErrTokenInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 2+macLen {
		return Claims{}, ErrTokenInvalid
	}
	payload, sum := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	if payload[0] != tokenVersion || len(payload) < 2+int(payload[1]) {
		return Claims{}, ErrTokenInvalid
	}
	secret, ok := t.keys[string(payload[2:2+int(payload[1])])]
	if !ok || !hmac.Equal(sum, mac(secret, payload)) {
		return Claims{}, ErrTokenInvalid
	}
	rest := payload[2+int(payload[1]):]
	if len(rest) < 1 {
		return Claims{}, ErrTokenInvalid
	}
	c := Claims{Kind: Kind(rest[0])}
	rest = rest[1:]
	exp, n := binary.Uvarint(rest)
	if n <= 0 || exp > 1<<40 {
		return Claims{}, ErrTokenInvalid
	}
	rest = rest[n:]
	campaign, n := binary.Uvarint(rest)
	if n <= 0 || campaign > 1<<62 {
		return Claims{}, ErrTokenInvalid
	}
	rest = rest[n:]
	if c.CustomerID, rest, ok = lenPrefixed(rest); !ok || c.CustomerID == "" {
		return Claims{}, ErrTokenInvalid
	}
	if c.Occurrence, rest, ok = lenPrefixed(rest); !ok {
		return Claims{}, ErrTokenInvalid
	}
	if c.URL, rest, ok = lenPrefixed(rest); !ok || len(rest) != 0 {
		return Claims{}, ErrTokenInvalid
	}
	switch {
	case c.Kind == KindOpen && c.URL == "":
	case c.Kind == KindClick && validTarget(c.URL):
	default:
		return Claims{}, ErrTokenInvalid
	}
	c.CampaignID, c.ExpiresAt = int64(campaign), time.Unix(int64(exp), 0).UTC()
	if !t.now().Before(c.ExpiresAt) {
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
