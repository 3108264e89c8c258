package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/tailor-email/tailor/templates
cpu: Test CPU
BenchmarkRender   	    3656	    250000 ns/op	  107968 B/op	    1328 allocs/op
some log line from a benchmark
pkg: github.com/tailor-email/tailor/pipeline/cdc
BenchmarkCDC-2   	       1	5000000000 ns/op	   812.5 p50_ms	  1320 p99_ms	  2100 rows/s
PASS
`

func TestRun_WritesNamedFigures(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "raw.txt")
	require.NoError(t, os.WriteFile(in, []byte(sample), 0o644))
	md, js := filepath.Join(dir, "B.md"), filepath.Join(dir, "r.json")
	require.NoError(t, run(in, md, js))

	var figs []Figure
	b, err := os.ReadFile(js)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &figs))
	got := map[string]float64{}
	for _, f := range figs {
		got[f.Name] = f.Value
		require.Contains(t, f.Command, "make bench")
	}
	require.Equal(t, map[string]float64{
		"render.renders_per_sec": 4000, "render.allocs_per_render": 1328,
		"cdc.rows_per_sec": 2100, "cdc.latency_p50_ms": 812.5, "cdc.latency_p99_ms": 1320,
	}, got)
	report, err := os.ReadFile(md)
	require.NoError(t, err)
	require.True(t, strings.Contains(string(report), "| `render.renders_per_sec` | 4 000 | renders/s |"), string(report))
}

func TestRun_NoResultsIsAnError(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "raw.txt")
	require.NoError(t, os.WriteFile(in, []byte("PASS\nok x 0.1s\n"), 0o644))
	require.ErrorContains(t, run(in, filepath.Join(dir, "m"), filepath.Join(dir, "j")), "no benchmark results")
}
