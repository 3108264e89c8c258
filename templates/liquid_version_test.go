package templates

import (
	"debug/buildinfo"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
	return goModVersion(string(b), path)
}

// goModVersion is path's version in a go.mod: a replacement's, else the requirement's.
// (golang.org/x/mod/modfile would parse it fully, at the price of its init-time heap in this
// test binary, which BenchmarkRender's GC would mark.)
func goModVersion(gomod, path string) string {
	required, replaced := "", ""
	for _, line := range strings.Split(gomod, "\n") {
		line = strings.TrimSpace(line)
		line = strings.TrimPrefix(strings.TrimPrefix(line, "require "), "replace ")
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != path {
			continue
		}
		if slices.Contains(f, "=>") {
			replaced = f[len(f)-1]
		} else {
			required = f[1]
		}
	}
	return cmpOr(replaced, required)
}

func TestGoModVersion(t *testing.T) {
	t.Parallel()
	const p = "github.com/osteele/liquid"
	require.Equal(t, "v1.6.0", goModVersion("module x\n\nrequire (\n\tgithub.com/osteele/liquid v1.6.0 // indirect\n)\n", p))
	require.Equal(t, "v1.5.0", goModVersion("require github.com/osteele/liquid v1.5.0\n", p))
	require.Equal(t, "v1.7.1", goModVersion("require github.com/osteele/liquid v1.6.0\nreplace github.com/osteele/liquid => github.com/fork/liquid v1.7.1\n", p))
	require.Empty(t, goModVersion("require github.com/osteele/liquidx v1.6.0\n", p))
}
