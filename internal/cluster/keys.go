package cluster

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/tailor-email/tailor/internal/apikeys"
)

// Keys are the secrets one cluster's processes share: a bootstrap API key for serve's
// ingestion API, the token key that signs preference links (work) and checks them (serve), and
// the preference webhook's secret.
type Keys struct {
	APIKey        string // "tlr_..."; serve gets only its SHA-256
	TokenKey      string // "ID=BASE64" as --token-key takes it
	WebhookSecret string // "whsec_BASE64"
}

// NewKeys makes fresh random keys.
func NewKeys() (Keys, error) {
	key, err := apikeys.NewKey()
	if err != nil {
		return Keys{}, err
	}
	tok, hook := make([]byte, 32), make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return Keys{}, fmt.Errorf("cluster: token key: %w", err)
	}
	if _, err := rand.Read(hook); err != nil {
		return Keys{}, fmt.Errorf("cluster: webhook secret: %w", err)
	}
	return Keys{
		APIKey:        key,
		TokenKey:      "cluster=" + base64.StdEncoding.EncodeToString(tok),
		WebhookSecret: "whsec_" + base64.StdEncoding.EncodeToString(hook),
	}, nil
}

// APIKeyHash is the SHA-256 (hex) of the API key, as serve's --api-key-hash takes it.
func (k Keys) APIKeyHash() string {
	sum := sha256.Sum256([]byte(k.APIKey))
	return hex.EncodeToString(sum[:])
}

// RoleArgs wires the keys into the roles: serve checks the API key, the webhook signature and
// preference tokens; work signs preference links that point at publicURL (a serve process).
func (k Keys) RoleArgs(publicURL string) map[string][]string {
	return map[string][]string{
		"serve": {"--api-key-hash", k.APIKeyHash(), "--token-key", k.TokenKey, "--public-url", publicURL, "--webhook-secret", k.WebhookSecret},
		"work":  {"--token-key", k.TokenKey, "--public-url", publicURL},
	}
}
