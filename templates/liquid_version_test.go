package templates

import (
	"debug/buildinfo"
	"os"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"
)

// liquidVersion is the osteele/liquid version whose renderer the fast path (fast.go, fastexpr.go)
// and the budget hooks (budget.go, engine.go) mirror.
const liquidVersion = "v1.6.0"

// TestLiquidVersion_IsTheOneTheFastPathMirrors fails when go.mod moves osteele/liquid: the fast
// path copies liquid's rendering quirks and the budgets hook into liquid's tags, filters and
// writers, so a new version must be read before it is trusted.
func TestLiquidVersion_IsTheOneTheFastPathMirrors(t *testing.T) {
	t.Parallel()
	require.Equal(t, liquidVersion, linkedVersion(t, "github.com/osteele/liquid"),
		"osteele/liquid changed: re-check that the fast path (fast.go, fastexpr.go) still mirrors its renderer and that "+
			"the budgets still reach it (rewrite, assignTag, captureCompiler, guardFilters, limitWriter), run "+
			"go test -fuzz FuzzFast_MatchesLiquid ./templates, then update liquidVersion")
}

// linkedVersion is the version of module path in the test binary's build information. Binaries
// that go test builds and runs carry none (go test -c ones do; golang/go#76926), and then it is
// the main module's requirement in go.mod, which is what the build selects.
func linkedVersion(t *testing.T, path string) string {
	t.Helper()
	deps := func(info *debug.BuildInfo) string {
		for _, dep := range info.Deps {
			if dep.Path == path {
				if dep.Replace != nil {
					return dep.Replace.Version
				}
				return dep.Version
			}
		}
		return ""
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := deps(info); v != "" {
			return v
		}
	}
	if exe, err := os.Executable(); err == nil {
		if info, err := buildinfo.ReadFile(exe); err == nil {
			if v := deps(info); v != "" {
				return v
			}
		}
	}
	b, err := os.ReadFile("../go.mod")
	require.NoError(t, err)
	f, err := modfile.Parse("go.mod", b, nil)
	require.NoError(t, err)
	for _, r := range f.Replace {
		if r.Old.Path == path {
			return r.New.Version
		}
	}
	for _, r := range f.Require {
		if r.Mod.Path == path {
			return r.Mod.Version
		}
	}
	return ""
}
