package app

import (
	"log/slog"

	"github.com/tailor-email/tailor/internal/apikeys"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/internal/httpapi"
)

// APIKeys returns the keys tailor serve accepts: the bootstrap keys whose SHA-256 hashes are
// given (every scope; checked first, without I/O) and the keys in Postgres (api_keys, with
// their scopes; a revocation takes effect within apikeys.MaxAgeDefault).
func APIKeys(b *backends.Backends, bootstrapHashes []string, logger *slog.Logger) (httpapi.KeyChecker, error) {
	static, err := httpapi.NewStaticKeys(bootstrapHashes)
	if err != nil {
		return nil, err
	}
	stored, err := apikeys.NewChecker(apikeys.CheckerConfig{DB: b.Pool, Logger: logger})
	if err != nil {
		return nil, err
	}
	return httpapi.AnyOf(static, stored), nil
}
