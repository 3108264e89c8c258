package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/metrics"
	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/pipeline/tracking"
	"github.com/urfave/cli/v2"
)

var update = flag.Bool("update", false, "rewrite the README's CLI reference, event schema and profile fields")

func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	t.Setenv("TAILOR_DIR", filepath.Join(t.TempDir(), "no-stack"))
	code := run(context.Background(), append([]string{"tailor"}, args...), &out, &out)
	return code, out.String()
}

func TestRun_ExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, exitOK, "COMMANDS:"},
		{[]string{"--no-such-flag"}, exitUsage, "flag provided but not defined"},
		{[]string{"nosuch"}, exitUsage, `unknown command "nosuch"`},
		{[]string{"campaign", "create"}, exitUsage, `Required flags "template, segment" not set`},
		{[]string{"campaign", "show", "abc"}, exitUsage, "want one campaign ID"},
		{[]string{"--log-level", "loud", "dev", "status"}, exitUsage, "--log-level"},
		{[]string{"campaign", "create", "--template", "/nonexistent", "--segment", "true"}, exitUsage, "--template"},
		{[]string{"dev", "status"}, exitFailure, "tailor dev up"},
		{[]string{"dev", "restart", "kinesis"}, exitUsage, "keep their data in memory"},
		{[]string{"dev", "restart"}, exitUsage, "want postgres"},
		{[]string{"dev", "cluster", "--roles", "work=x"}, exitUsage, "want a count from 0 to 16"},
		{[]string{"dev", "cluster", "--roles", "mailer=1"}, exitUsage, "unknown role \"mailer\" (known: cdc, consume, work, serve, relay)"},
		{[]string{"messages", "list", "--campaign", "1", "--format", "pdf"}, exitUsage, "want summary, text, html or json"},
		{[]string{"segment", "check", "count_product_vew > 0"}, exitUsage, `unknown field "count_product_vew" (did you mean "count_product_view"?)`},
		{[]string{"segment", "check", "country == 3"}, exitUsage, "(mismatched types string and int) (line 1, column 9)"},
		{[]string{"segment", "check", `country == "FR" && count_purchase_7d > 0`}, exitOK, "fields: country, count_purchase_7d"},
		{[]string{"segment", "check"}, exitUsage, "want one expression"},
		{[]string{"segment", "fields"}, exitOK, "count_add_to_cart_24h"},
		{[]string{"campaign", "create", "--template", "../../templates/examples/welcome", "--segment", "count_product_vew > 0"}, exitUsage, `did you mean "count_product_view"`},
		{[]string{"campaign", "create", "--template", "../../templates/examples/welcome", "--segment", "country == 3"}, exitUsage, "mismatched types"},
	} {
		code, out := runCLI(t, tc.args...)
		require.Equal(t, tc.code, code, "tailor %s\n%s", strings.Join(tc.args, " "), out)
		require.Contains(t, out, tc.want, "tailor %s", strings.Join(tc.args, " "))
	}
}

// commandPaths lists every command path, depth first: ["dev"], ["dev", "up"], ...
func commandPaths(cmds []*cli.Command, prefix []string) [][]string {
	var out [][]string
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		p := append(append([]string{}, prefix...), c.Name)
		out = append(out, p)
		out = append(out, commandPaths(c.Subcommands, p)...)
	}
	return out
}

func TestHelp_EveryFlagNamesItsEnvVar(t *testing.T) {
	app := newApp(nil, nil)
	global := helpText(t)
	for _, f := range app.Flags {
		require.Contains(t, global, "[$TAILOR_"+strings.ToUpper(strings.ReplaceAll(f.Names()[0], "-", "_"))+"]", "global flag --%s", f.Names()[0])
	}
	for _, path := range commandPaths(app.Commands, nil) {
		code, out := runCLI(t, append(path, "--help")...)
		require.Equal(t, exitOK, code, strings.Join(path, " "))
		_, options, ok := strings.Cut(out, "OPTIONS:")
		require.True(t, ok, "tailor %s --help has no OPTIONS", strings.Join(path, " "))
		for _, line := range strings.Split(options, "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "--") || strings.HasPrefix(line, "--help") {
				continue
			}
			require.Contains(t, line, "[$", "tailor %s --help: flag without an env var: %s", strings.Join(path, " "), line)
		}
	}
}

func helpText(t *testing.T) string {
	_, out := runCLI(t, "--help")
	return out
}

// The README's CLI reference is generated from --help; this test keeps it current
// (go test ./cmd/tailor -run TestREADME -update, or make docs, rewrites it).
func TestREADME_CLIReferenceIsCurrent(t *testing.T) {
	var ref strings.Builder
	ref.WriteString("```\n$ tailor --help\n" + helpText(t) + "```\n")
	for _, path := range commandPaths(newApp(nil, nil).Commands, nil) {
		_, out := runCLI(t, append(path, "--help")...)
		ref.WriteString("\n```\n$ tailor " + strings.Join(path, " ") + " --help\n" + out + "```\n")
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	want := replaceBetween(t, string(readme), "cli-reference", ref.String())
	want = replaceBetween(t, want, "event-schema", "```json\n"+strings.TrimSpace(string(events.Schema))+"\n```\n")
	want = replaceBetween(t, want, "profile-fields", profile.FieldReference())
	infos, err := app.MetricsReference()
	require.NoError(t, err)
	want = replaceBetween(t, want, "metrics", metrics.Table(infos))
	if *update {
		require.NoError(t, os.WriteFile("../../README.md", []byte(want), 0o644))
		return
	}
	require.Equal(t, want, string(readme), "README's CLI reference is stale: run make docs")
}

// replaceBetween replaces what stands between <!-- NAME:start --> and <!-- NAME:end -->.
func replaceBetween(t *testing.T, doc, name, body string) string {
	start, end := "<!-- "+name+":start -->\n", "<!-- "+name+":end -->"
	i, j := strings.Index(doc, start), strings.Index(doc, end)
	require.True(t, i >= 0 && j > i, "README.md lacks the %s markers", name)
	return doc[:i+len(start)] + body + doc[j:]
}

func TestEngagementRows_RatesAreOfTheMessagesSent(t *testing.T) {
	e := tracking.Engagement{Opens: 12, UniqueOpens: 8, Clicks: 5, UniqueClicks: 4}
	rows := engagementRows(tracking.Track{Opens: true, Clicks: true}, e, 200)
	require.Equal(t, []engagementRow{
		{unique: "opened", hits: "opens", rateName: "open rate", n: 8, total: 12, rate: "4.0 %"},
		{unique: "clicked", hits: "clicks", rateName: "click rate", n: 4, total: 5, rate: "2.0 %"},
	}, rows)
	only := engagementRows(tracking.Track{Clicks: true}, e, 0)
	require.Equal(t, []engagementRow{{unique: "clicked", hits: "clicks", rateName: "click rate", n: 4, total: 5}}, only, "only what is tracked; no rate before a send")
}
