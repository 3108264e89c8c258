package app

import (
	"log/slog"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/tracking"
	"github.com/tailor-email/tailor/preferences"
)

// TrackingTokens returns the tracking token service over keys derived from the preference-link
// keys (the first signs, all verify, as for preference links); nil without keys.
func TrackingTokens(keys []preferences.TokenKey) (*tracking.Tokens, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	tk := make([]tracking.Key, len(keys))
	for i, k := range keys {
		var err error
		if tk[i], err = tracking.DeriveKey(k.ID, k.Secret); err != nil {
			return nil, err
		}
	}
	return tracking.NewTokens(tracking.TokensConfig{Keys: tk})
}

// Tracker returns the render path's engagement tracking (jobs.Config.Tracker) with links under
// publicURL; nil (messages render untracked) unless both publicURL and keys are given.
func Tracker(publicURL string, keys []preferences.TokenKey) (jobs.Tracker, error) {
	if publicURL == "" || len(keys) == 0 {
		return nil, nil
	}
	tokens, err := TrackingTokens(keys)
	if err != nil {
		return nil, err
	}
	return tracking.NewRewriter(publicURL, tokens)
}

// TrackingHandler returns the handler of GET /t/o/TOKEN and /t/c/TOKEN, recording hits in the
// backends' delivery outbox; nil without keys (the routes stay off).
func TrackingHandler(b *backends.Backends, keys []preferences.TokenKey, logger *slog.Logger) (*tracking.Handler, error) {
	tokens, err := TrackingTokens(keys)
	if err != nil || tokens == nil {
		return nil, err
	}
	return tracking.NewHandler(tracking.HandlerConfig{Tokens: tokens, Recorder: tracking.NewRecorder(b.Pool), Logger: logger})
}
