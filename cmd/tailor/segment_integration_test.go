package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/profile"
)

// segmentProfiles writes 120 profiles: every third in FR, every tenth without an address.
// In FR with an address: i%3 == 0 and i%10 != 0, 36 profiles.
func segmentProfiles(t *testing.T, e *cliEnv) {
	seedProfilesFunc(t, e, 120, func(i int) *profile.Profile {
		p := &profile.Profile{ID: fmt.Sprintf("s%03d", i), CRM: profile.CRM{FirstName: fmt.Sprintf("N%d", i), Country: "DE"}}
		if i%3 == 0 {
			p.CRM.Country = "FR"
		}
		if i%10 != 0 {
			p.CRM.Email = fmt.Sprintf("s%03d@example.com", i)
		}
		return p
	})
}

// segment count (exact and estimated) and sample read the profiles the way a campaign does.
func TestCLI_SegmentCountAndSample(t *testing.T) {
	e := newCLIEnv(t)
	segmentProfiles(t, e)

	out := e.ok("segment", "count", "country == 'FR'")
	require.Contains(t, out, "36 profiles match (120 scanned, 12 without an address, 0 could not be evaluated)")

	est := e.ok("segment", "count", "--estimate", "--sample", "48", "country == 'FR'")
	m := regexp.MustCompile(`^~(\d+) profiles match \(~(\d+) scanned`).FindStringSubmatch(est)
	require.NotNil(t, m, "an estimate is marked as one: %s", est)
	matched, _ := strconv.Atoi(m[1])
	scanned, _ := strconv.Atoi(m[2])
	// The emulator reports no item count: whole segments of 16 are read and scaled.
	require.InDelta(t, 120, scanned, 60, "scaled to the table: %s", est)
	require.InDelta(t, 36, matched, 24, "scaled from about 48 profiles: %s", est)
	exact := e.ok("segment", "count", "--estimate", "--sample", "500", "country == 'FR'")
	require.Contains(t, exact, "36 profiles match (120 scanned", "a sample as big as the table reads it all: exact, no ~")

	sample := e.ok("segment", "sample", "-n", "3", "country == 'FR' && first_name != ''")
	lines := strings.Split(strings.TrimSpace(sample), "\n")
	require.Len(t, lines, 4, "a header and three profiles:\n%s", sample)
	require.Regexp(t, `^CUSTOMER_ID\s+EMAIL\s+FIRST_NAME\s+COUNTRY\s+TIMEZONE$`, lines[0], "key fields, then the fields the segment reads (all among them)")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		id, _ := strconv.Atoi(strings.TrimPrefix(f[0], "s"))
		require.Zero(t, id%3, "only FR profiles: %s", l)
		require.NotZero(t, id%10, "only reachable profiles: %s", l)
		require.Equal(t, f[0]+"@example.com", f[1])
		require.Equal(t, "FR", f[3])
	}

	code, none := e.run(context.Background(), "segment", "sample", "country == 'XX'")
	require.Equal(t, exitOK, code)
	require.Contains(t, none, "no profile matches")
	code, bad := e.run(context.Background(), "segment", "count", "contry == 'FR'")
	require.Equal(t, exitUsage, code, bad)
	require.Contains(t, bad, `did you mean "country"`)
}

// campaign create --dry-run prints the audience, who is left out and why, a rendered sample,
// and writes nothing.
func TestCLI_CampaignDryRunWritesNothing(t *testing.T) {
	e := newCLIEnv(t)
	segmentProfiles(t, e)
	ctx := context.Background()
	_, err := e.env.Pool.Exec(ctx, `INSERT INTO suppressions (email, customer_id, reason, source) VALUES ('s003@example.com', 's003', 'hard_bounce', 'test')`)
	require.NoError(t, err)
	t.Setenv("TAILOR_CONTENT_URL", "http://127.0.0.1:1") // content falls back at once

	out := e.ok("campaign", "create", "--template", "../../templates/examples/welcome", "--segment", "country == 'FR'", "--dry-run", "--sample", "50")
	require.Contains(t, out, "dry run (nothing written): 120 profiles scanned, 36 in the segment, audience 35")
	require.Regexp(t, `(?m)^  no_address\s+12$`, out)
	require.Regexp(t, `(?m)^  not_in_segment\s+72$`, out)
	require.Regexp(t, `(?m)^  suppressed\s+1$`, out)
	require.Regexp(t, `──── sample, variant \(no variants\), customer s\d+\nSubject: .+`, out)
	require.NotContains(t, out, "customer s003\n", "the suppressed customer is no sample")
	require.Contains(t, out, "content API calls (distinct URLs over a sample of")

	var n int
	require.NoError(t, e.env.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM campaigns) + (SELECT count(*) FROM river_job) + (SELECT count(*) FROM rendered_messages)`).Scan(&n))
	require.Zero(t, n, "a dry run writes nothing")
}
