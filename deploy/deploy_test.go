// Package deploy_test checks the monitoring files in deploy/: the Grafana dashboard and the
// Prometheus alert rules name only metrics Tailor exports (the registry listing the README's
// metrics table uses), and the dashboard has what Grafana needs to import it.
package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/tailor-email/tailor/internal/app"
)

// builtin are series Prometheus itself makes, which queries may use.
var builtin = map[string]bool{"up": true}

// exported returns every series name a query may use: each metric, with a histogram's
// _bucket, _sum and _count.
func exported(t *testing.T) map[string]bool {
	infos, err := app.MetricsReference()
	require.NoError(t, err)
	out := map[string]bool{}
	for _, i := range infos {
		for _, s := range i.Series() {
			out[s] = true
		}
	}
	return out
}

var (
	stringLit = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	// A metric name in PromQL: an identifier not followed by "(" (a function) and not inside
	// by (...) / without (...) / {...} (labels), which the caller strips first.
	ident    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	grouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	matchers = regexp.MustCompile(`\{[^}]*\}`)
	ranges   = regexp.MustCompile(`\[[^\]]*\]`)
	keywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression uses.
func metricNames(expr string) []string {
	e := stringLit.ReplaceAllString(expr, `""`)
	e = matchers.ReplaceAllString(e, "")
	e = grouping.ReplaceAllString(e, "")
	e = ranges.ReplaceAllString(e, "")
	var out []string
	for _, loc := range ident.FindAllStringIndex(e, -1) {
		name := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " ")
		if strings.HasPrefix(rest, "(") || keywords[strings.ToLower(name)] {
			continue // a function or an operator
		}
		if loc[0] > 0 && (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.') {
			continue // an exponent or a unit of a number (1e9)
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames_ParsesPromQL(t *testing.T) {
	require.Equal(t, []string{"tailor_a_bucket"}, metricNames(`histogram_quantile(0.99, sum by (le) (rate(tailor_a_bucket{x="y"}[5m])))`))
	require.Equal(t, []string{"a", "b"}, metricNames(`max by (shard) (a) > 60 and on (shard) deriv(b[10m]) > 1e9`))
	require.Equal(t, []string{"up"}, metricNames(`up{job=~"tailor-(work|serve)"} == 0`))
}

// checkExpr fails unless expr uses at least one metric and only exported ones.
func checkExpr(t *testing.T, known map[string]bool, where, expr string) {
	t.Helper()
	names := metricNames(expr)
	require.NotEmpty(t, names, "%s: %q names no metric", where, expr)
	for _, n := range names {
		require.True(t, known[n] || builtin[n], "%s: %q uses %s, which no Tailor component exports (see the README's metrics table)", where, expr, n)
	}
}

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos *struct {
		H, W, X, Y *int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// The dashboard imports into Grafana (title, uid, schemaVersion, panels with id, type,
// gridPos and targets), and every query names metrics Tailor exports. It covers each area
// the operator watches.
func TestGrafanaDashboard_QueriesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/tailor.json")
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	require.NotEmpty(t, d.Title)
	require.Regexp(t, `^[a-zA-Z0-9_-]{1,40}$`, d.UID, "Grafana uids are at most 40 characters")
	require.GreaterOrEqual(t, d.SchemaVersion, 30)
	require.NotEmpty(t, d.Panels)

	known := exported(t)
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := "panel " + p.Title
			require.NotZero(t, p.ID, where)
			require.False(t, ids[p.ID], "%s: id %d used twice", where, p.ID)
			ids[p.ID] = true
			require.NotEmpty(t, p.Type, where)
			require.NotNil(t, p.GridPos, where)
			require.True(t, p.GridPos.H != nil && p.GridPos.W != nil && p.GridPos.X != nil && p.GridPos.Y != nil, "%s: gridPos needs h, w, x, y", where)
			require.LessOrEqual(t, *p.GridPos.X+*p.GridPos.W, 24, "%s: wider than the grid", where)
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			require.NotEmpty(t, p.Targets, "%s has no query", where)
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.RefID, where)
				require.False(t, refs[tg.RefID], "%s: refId %s twice", where, tg.RefID)
				refs[tg.RefID] = true
				checkExpr(t, known, where, tg.Expr)
				for _, n := range metricNames(tg.Expr) {
					used[n] = true
				}
			}
		}
	}
	walk(d.Panels)
	// The areas the dashboard must cover, by a metric of each.
	for _, n := range []string{
		"tailor_events_accepted_total", "tailor_consumer_iterator_age_seconds", "tailor_cdc_slot_lag_bytes",
		"tailor_profile_event_writes_total", "tailor_campaign_processed", "tailor_render_seconds_bucket",
		"tailor_content_source_outcomes_total", "tailor_content_breaker_state", "tailor_delivery_acks_total",
		"tailor_delivery_claims_total", "tailor_relay_outcomes_total", "tailor_dead_letters_total",
	} {
		require.True(t, used[n], "the dashboard shows no panel with %s", n)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// dashboardExprs returns every query of the dashboard.
func dashboardExprs(t *testing.T) []string {
	b, err := os.ReadFile("grafana/tailor.json")
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	var out []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				out = append(out, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	return out
}

// promtool parses every dashboard query with Prometheus's own PromQL parser (as recording
// rules of a scratch rule file) where it is installed.
func TestGrafanaDashboard_PromtoolParsesEveryQuery(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH (apt-get install prometheus)")
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range dashboardExprs(t) {
		rules = append(rules, rule{Record: fmt.Sprintf("tailor:dashboard_query_%d", i), Expr: e})
	}
	require.NotEmpty(t, rules)
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	require.NoError(t, os.WriteFile(path, b, 0o644))
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), fmt.Sprintf("SUCCESS: %d rules found", len(rules)))
}

// Every alert names metrics Tailor exports, has a severity and a summary, and the failure
// modes the operator must hear about each have a rule.
func TestAlertRules_UseExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("prometheus/alerts.yml")
	require.NoError(t, err)
	var f ruleFile
	require.NoError(t, yaml.Unmarshal(b, &f))
	require.NotEmpty(t, f.Groups)
	known := exported(t)
	alerts := map[string]bool{}
	for _, g := range f.Groups {
		require.NotEmpty(t, g.Rules, g.Name)
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s: a rule without a name", g.Name)
			require.False(t, alerts[r.Alert], "%s twice", r.Alert)
			alerts[r.Alert] = true
			checkExpr(t, known, "alert "+r.Alert, r.Expr)
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], r.Alert)
		}
	}
	for _, a := range []string{
		"TailorProcessDown", "TailorConsumerLagGrowing", "TailorCDCSlotLag", "TailorDeadLettersRising",
		"TailorContentBreakerOpen", "TailorRiverJobsStuck", "TailorSenderBacklog", "TailorRelayBounceRate", "TailorRelayFailureRate",
	} {
		require.True(t, alerts[a], "no %s rule", a)
	}
}

// promtool validates the rules' syntax (PromQL, durations, templates) and runs their unit
// tests where it is installed (apt-get install prometheus); without it the test is skipped.
func TestAlertRules_PromtoolChecks(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH (apt-get install prometheus)")
	}
	out, err := exec.Command(promtool, "check", "rules", "prometheus/alerts.yml").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "SUCCESS")

	// alerts_test.yml: each failure mode fires its alert on synthetic series, with its labels
	// and annotations, and healthy series do not.
	cmd := exec.Command(promtool, "test", "rules", "alerts_test.yml")
	cmd.Dir = "prometheus"
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "SUCCESS")
}
