// Package storetest holds the integration tests of templates.Store against Postgres. They live
// apart from package templates so that its unit tests and fuzz targets start no local stack.
package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/templates"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func files(version, subject string) map[string]string {
	return map[string]string{
		templates.FileManifest: "name: promo\nversion: " + version + "\n",
		templates.FileSubject:  subject,
		templates.FileHTML:     "<p>{{ customer.first_name }}</p>",
		templates.FileText:     "{{ customer.first_name }}",
	}
}

func mustTemplate(t *testing.T, f map[string]string) *templates.Template {
	t.Helper()
	tpl, err := templates.FromFiles(f)
	require.NoError(t, err)
	return tpl
}

func TestStore_PublishIsIdempotentAndImmutable(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	store := templates.NewStore(env.Pool)

	v1 := mustTemplate(t, files("1", "Hello"))
	p, err := store.Publish(ctx, v1)
	require.NoError(t, err)
	require.True(t, p.Created)
	require.Equal(t, v1.Checksum(), p.Checksum)

	again, err := store.Publish(ctx, mustTemplate(t, files("1", "Hello")))
	require.NoError(t, err, "publishing identical content is a no-op")
	require.False(t, again.Created)
	require.Equal(t, p.PublishedAt, again.PublishedAt)

	_, err = store.Publish(ctx, mustTemplate(t, files("1", "Changed")))
	require.ErrorIs(t, err, templates.ErrVersionConflict)
	var vc *templates.VersionConflictError
	require.True(t, errors.As(err, &vc))
	require.Equal(t, 1, vc.Version)
	require.Contains(t, err.Error(), "bump version in template.yaml (to 2)")

	got, gp, err := store.Get(ctx, "promo", 1)
	require.NoError(t, err)
	require.Equal(t, v1.Files(), got.Files(), "the conflicting publish did not overwrite")
	require.Equal(t, p.Checksum, gp.Checksum)

	_, err = store.Publish(ctx, mustTemplate(t, files("2", "Changed")))
	require.NoError(t, err)
	latest, lp, err := store.Latest(ctx, "promo")
	require.NoError(t, err)
	require.Equal(t, 2, latest.Version())
	require.Equal(t, 2, lp.Version)

	_, _, err = store.Get(ctx, "promo", 3)
	require.ErrorIs(t, err, templates.ErrVersionNotFound)
	_, _, err = store.Latest(ctx, "nope")
	require.ErrorIs(t, err, templates.ErrVersionNotFound)
}

func TestStore_ConcurrentPublishesStoreOneVersion(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	store := templates.NewStore(env.Pool)
	tpl := mustTemplate(t, files("7", "Hi"))

	const n = 8
	created := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p, err := store.Publish(ctx, tpl)
			created[i], errs[i] = p.Created, err
		})
	}
	wg.Wait()
	count := 0
	for i := range n {
		require.NoError(t, errs[i])
		if created[i] {
			count++
		}
	}
	require.Equal(t, 1, count, "exactly one publish stores the version")
}
