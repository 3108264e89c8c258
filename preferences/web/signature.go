package web

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Standard Webhooks headers.
const (
	HeaderID        = standardwebhooks.HeaderWebhookID
	HeaderTimestamp = standardwebhooks.HeaderWebhookTimestamp
	HeaderSignature = standardwebhooks.HeaderWebhookSignature
)

// Secret bounds of the Standard Webhooks scheme: base64 of 24 to 64 random bytes after whsec_.
const (
	SecretPrefix   = "whsec_"
	SecretMinBytes = 24
	SecretMaxBytes = 64
	// Tolerance is how far a webhook-timestamp may be from the server clock (the library's).
	Tolerance = 5 * time.Minute
)

// Signature errors, all answered 401 except ErrSignatureHeaders (400).
var (
	ErrSignatureHeaders = errors.New("missing or malformed webhook-id, webhook-timestamp or webhook-signature header")
	ErrSignatureInvalid = errors.New("no webhook-signature matches any active secret")
	ErrTimestamp        = errors.New("webhook-timestamp is more than 5 minutes from the server clock (check the sender's clock; replays are refused)")
)

// Verifier checks Standard Webhooks signatures (v1: base64 HMAC-SHA256 of "id.timestamp.body")
// against every active secret, so secrets rotate without downtime: add the new secret to the
// server, switch the sender, then remove the old one. Comparisons take constant time (the
// library's hmac.Equal); the timestamp must be within Tolerance. Safe for concurrent use.
type Verifier struct {
	hooks []*standardwebhooks.Webhook
}

// NewVerifier parses the active secrets (whsec_ followed by base64 of 24 to 64 bytes).
func NewVerifier(secrets []string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, errors.New("webhook verifier: no secrets")
	}
	v := &Verifier{}
	for i, s := range secrets {
		if err := CheckSecret(s); err != nil {
			return nil, fmt.Errorf("webhook secret %d: %w", i+1, err)
		}
		wh, err := standardwebhooks.NewWebhook(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("webhook secret %d: %w", i+1, err)
		}
		v.hooks = append(v.hooks, wh)
	}
	return v, nil
}

// CheckSecret says what is wrong with a secret, if anything: whsec_ and standard base64 of
// SecretMinBytes to SecretMaxBytes bytes.
func CheckSecret(s string) error {
	s = strings.TrimSpace(s)
	raw, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return fmt.Errorf("want %s followed by base64 ('tailor webhook secret' makes one)", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return errors.New("the part after whsec_ is not standard base64")
	}
	if len(key) < SecretMinBytes || len(key) > SecretMaxBytes {
		return fmt.Errorf("the secret has %d bytes, want %d to %d", len(key), SecretMinBytes, SecretMaxBytes)
	}
	return nil
}

// Verify checks a request's signature headers against body.
func (v *Verifier) Verify(body []byte, h http.Header) error {
	if h.Get(HeaderID) == "" || h.Get(HeaderSignature) == "" {
		return ErrSignatureHeaders
	}
	if _, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64); err != nil {
		return ErrSignatureHeaders
	}
	for _, wh := range v.hooks {
		err := wh.Verify(body, h)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, standardwebhooks.ErrMessageTooOld), errors.Is(err, standardwebhooks.ErrMessageTooNew):
			return ErrTimestamp
		case errors.Is(err, standardwebhooks.ErrRequiredHeaders), errors.Is(err, standardwebhooks.ErrInvalidHeaders):
			return ErrSignatureHeaders
		}
	}
	return ErrSignatureInvalid
}

// Sign returns the Standard Webhooks headers for body sent as id at the given time, signed with
// secret, as `tailor webhook sign` prints them and tests send them.
func Sign(secret, id string, at time.Time, body []byte) (http.Header, error) {
	if err := CheckSecret(secret); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, errors.New("sign: the webhook id is empty")
	}
	wh, err := standardwebhooks.NewWebhook(strings.TrimSpace(secret))
	if err != nil {
		return nil, err
	}
	sig, err := wh.Sign(id, at, body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(HeaderSignature, sig)
	return h, nil
}

// NewSecret returns a new random secret: whsec_ and base64 of 32 bytes (also usable as a
// preference token key's secret).
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// NewDeliveryID returns a random webhook id (msg_ and 24 base32 characters).
func NewDeliveryID() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	return "msg_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}
