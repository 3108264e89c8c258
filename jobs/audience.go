package jobs

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/preferences"
	"github.com/tailor-email/tailor/templates"
)

// ScanAudience streams every profile of the table, page by page over segments parallel scan
// segments, and calls fn for each page from one goroutine at a time. It stops when fn returns
// false or an error.
func ScanAudience(ctx context.Context, r ProfileReader, segments, pageSize int, fn func(*ProfilePage) (bool, error)) error {
	segments = max(segments, 1)
	var mu sync.Mutex
	stop := false
	g, ctx := errgroup.WithContext(ctx)
	for s := range segments {
		g.Go(func() error {
			after := ""
			for {
				page, err := r.ScanPage(ctx, s, segments, after, pageSize)
				if err != nil {
					return err
				}
				mu.Lock()
				more := !stop
				if more {
					more, err = fn(page)
					stop = stop || !more
				}
				mu.Unlock()
				if err != nil || !more || page.Last == "" {
					return err
				}
				after = page.Last
			}
		})
	}
	return g.Wait()
}

// SegmentCount is how many profiles a segment matches.
type SegmentCount struct {
	Scanned, Matched, Unreachable, Errors int
	// Estimated is true when Matched is extrapolated from a sample to the table's item count.
	Estimated bool
}

// CountSegment counts the reachable profiles seg matches, exactly (every profile), calling
// progress after each page.
func CountSegment(ctx context.Context, r ProfileReader, seg *Segment, segments int, progress func(SegmentCount)) (SegmentCount, error) {
	var n SegmentCount
	now := time.Now()
	err := ScanAudience(ctx, r, segments, ScanPageDefault, func(p *ProfilePage) (bool, error) {
		n.countPage(p, seg, now)
		if progress != nil {
			progress(n)
		}
		return true, nil
	})
	return n, err
}

func (n *SegmentCount) countPage(p *ProfilePage, seg *Segment, now time.Time) {
	n.Scanned += len(p.Profiles) + len(p.Bad)
	n.Errors += len(p.Bad)
	for _, prof := range p.Profiles {
		if !prof.Reachable() {
			n.Unreachable++
			continue
		}
		ok, err := seg.MatchProfile(prof, now)
		switch {
		case err != nil:
			n.Errors++
		case ok:
			n.Matched++
		}
	}
}

// EstimateSegment estimates the count from about sample profiles. It divides the table into
// parallel-scan segments of about sample items each (by the table's item count; 16 when that
// count is unknown, as on a new table or an emulator) and reads whole segments, in order, until it
// has read sample profiles: DynamoDB assigns items to scan segments by the hash of their key, so
// whole segments are a uniform sample, and the counts scale by segments in all / segments read.
// Having read every segment it is exact (Estimated false).
func EstimateSegment(ctx context.Context, r ProfileReader, seg *Segment, sample int, items int64) (SegmentCount, error) {
	sample = max(sample, 1)
	total := 16
	if items > 0 {
		total = int(min(max(items/int64(sample), 1), maxScanSegments))
	}
	var n SegmentCount
	now := time.Now()
	read := 0
	for s := 0; s < total && n.Scanned < sample; s++ {
		for after := ""; ; {
			page, err := r.ScanPage(ctx, s, total, after, min(sample, ScanPageDefault))
			if err != nil {
				return n, err
			}
			n.countPage(page, seg, now)
			if after = page.Last; after == "" {
				break
			}
		}
		read++
	}
	if read == total {
		return n, nil
	}
	scale := func(v int) int { return int(math.Round(float64(v) * float64(total) / float64(read))) }
	n.Scanned, n.Matched, n.Unreachable, n.Errors = scale(n.Scanned), scale(n.Matched), scale(n.Unreachable), scale(n.Errors)
	n.Estimated = true
	return n, nil
}

// maxScanSegments is DynamoDB's limit on a parallel scan's TotalSegments.
const maxScanSegments = 1_000_000

// SampleSegment returns up to n reachable profiles seg matches.
func SampleSegment(ctx context.Context, r ProfileReader, seg *Segment, n int) ([]*profile.Profile, error) {
	var out []*profile.Profile
	now := time.Now()
	err := ScanAudience(ctx, r, 1, max(n*4, 100), func(p *ProfilePage) (bool, error) {
		for _, prof := range p.Profiles {
			if len(out) >= n {
				break
			}
			if ok, err := seg.MatchProfile(prof, now); err == nil && ok && prof.Reachable() {
				out = append(out, prof)
			}
		}
		return len(out) < n, nil
	})
	return out, err
}

// DryRunConfig configures DryRun. Zero values mean defaults.
type DryRunConfig struct {
	Pool     *pgxpool.Pool
	Profiles ProfileReader
	// Sample is how many eligible profiles are rendered with live content to count the content
	// API calls. Default 200.
	Sample int
	// Getenv expands ${VAR} in content sources (templates.RendererConfig.Getenv).
	Getenv func(string) string
}

// DryRunSample is one rendered sample: a real profile, live content, one per variant.
type DryRunSample struct {
	Variant    string
	CustomerID string
	Message    *templates.Message
	Err        error
}

// EndpointCalls are the content API calls to one endpoint (scheme, host and path).
type EndpointCalls struct {
	Endpoint string
	// Distinct is the distinct URLs over the sample; Estimated scales that to the audience (a
	// URL every recipient shares stays one call: the renderer caches by URL).
	Distinct, Estimated int
}

// DryRunResult is what a campaign would do, computed without writing anything.
type DryRunResult struct {
	Scanned, Matched, Eligible int
	LeftOut                    map[string]int // reason -> recipients (scan and eligibility reasons)
	Samples                    []DryRunSample
	SampleSize                 int
	Calls                      []EndpointCalls
}

// DryRun scans the audience as the campaign would, checks eligibility (topic, consent,
// suppression, frequency cap) against Postgres, renders one sample per A/B variant from real
// profiles with live content, and counts the content calls over a sample. It writes nothing.
func DryRun(ctx context.Context, cfg DryRunConfig, in NewCampaign) (*DryRunResult, error) {
	if err := ValidateCampaign(ctx, cfg.Pool, in); err != nil {
		return nil, err
	}
	cfg.Sample = max(cfg.Sample, 1)
	if cfg.Sample == 1 {
		cfg.Sample = 200
	}
	seg, _ := ParseSegment(in.Segment)
	c := &Campaign{SendAt: in.SendAt, Timezone: cmpOr(in.Timezone, "UTC"), QuietHours: in.QuietHours}
	res := &DryRunResult{LeftOut: map[string]int{}}
	now := time.Now()
	var eligible []*profile.Profile
	err := ScanAudience(ctx, cfg.Profiles, ScanSegmentsDefault, ScanPageDefault, func(p *ProfilePage) (bool, error) {
		res.Scanned += len(p.Profiles) + len(p.Bad)
		res.LeftOut["decode_error"] += len(p.Bad)
		var rs []preferences.Recipient
		var ps []*profile.Profile
		for _, prof := range p.Profiles {
			if !prof.Reachable() {
				res.LeftOut[preferences.ReasonNoAddress]++
				continue
			}
			ok, err := seg.MatchProfile(prof, now)
			switch {
			case err != nil:
				res.LeftOut["segment_error"]++
				continue
			case !ok:
				res.LeftOut[ReasonNotInSegment]++
				continue
			}
			res.Matched++
			rs = append(rs, preferences.Recipient{CustomerID: prof.ID, Email: prof.CRM.Email})
			ps = append(ps, prof)
		}
		for chunk := range slices.Chunk(rs, 500) {
			reasons, err := preferences.Check(ctx, cfg.Pool, in.Topic, chunk)
			if err != nil {
				return false, err
			}
			capped, err := cappedNow(ctx, cfg.Pool, in.Cap, chunk, c, ps, now)
			if err != nil {
				return false, err
			}
			for _, r := range chunk {
				switch {
				case reasons[r.CustomerID] != "":
					res.LeftOut[reasons[r.CustomerID]]++
				case capped[r.CustomerID]:
					res.LeftOut[ReasonFrequencyCap]++
				default:
					res.Eligible++
				}
			}
			for _, prof := range ps {
				if len(eligible) < cfg.Sample && reasons[prof.ID] == "" && !capped[prof.ID] {
					eligible = append(eligible, prof)
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("dry run: %w", err)
	}
	for k, n := range res.LeftOut {
		if n == 0 {
			delete(res.LeftOut, k)
		}
	}
	if len(eligible) == 0 {
		return res, nil
	}
	calls := &countingTransport{base: http.DefaultTransport, urls: map[string]map[string]bool{}}
	r := templates.NewRenderer(templates.RendererConfig{HTTPClient: &http.Client{Transport: calls}, Getenv: cfg.Getenv})
	campaign := map[string]any{"id": "dry-run", "name": in.Name}
	variants := in.Template.Variants()
	if len(variants) == 0 {
		variants = []string{""}
	}
	for _, v := range variants {
		d := RenderData(eligible[0], campaign, now)
		d.Variant = v
		msg, err := r.Render(ctx, in.Template, d)
		res.Samples = append(res.Samples, DryRunSample{Variant: v, CustomerID: eligible[0].ID, Message: msg, Err: err})
	}
	for _, p := range eligible {
		if _, err := r.Render(ctx, in.Template, RenderData(p, campaign, now)); err != nil && ctx.Err() != nil {
			return nil, err
		}
	}
	res.SampleSize = len(eligible)
	for _, ep := range slices.Sorted(maps.Keys(calls.urls)) {
		d := len(calls.urls[ep])
		est := d
		if d > 1 {
			est = int(math.Ceil(float64(d) / float64(len(eligible)) * float64(res.Eligible)))
		}
		res.Calls = append(res.Calls, EndpointCalls{Endpoint: ep, Distinct: d, Estimated: est})
	}
	return res, nil
}

// cappedNow reports which recipients the frequency cap would exclude if sent now (read only).
func cappedNow(ctx context.Context, pool *pgxpool.Pool, cp Cap, rs []preferences.Recipient, c *Campaign, ps []*profile.Profile, now time.Time) (map[string]bool, error) {
	out := map[string]bool{}
	if cp.IsZero() || len(rs) == 0 {
		return out, nil
	}
	zone := map[string]string{}
	for _, p := range ps {
		zone[p.ID] = p.CRM.Timezone
	}
	ids := make([]string, len(rs))
	ats := make([]time.Time, len(rs))
	for i, r := range rs {
		ids[i] = r.CustomerID
		ats[i], _ = c.sendTime(zone[r.CustomerID], now)
	}
	rows, err := pool.Query(ctx, queries.Get("recent-sends"), ids, ats, int64(cp.Window/time.Second))
	if err != nil {
		return nil, fmt.Errorf("frequency cap: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n >= int64(cp.Count)
	}
	return out, rows.Err()
}

// countingTransport records the distinct URLs fetched, per endpoint.
type countingTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	urls map[string]map[string]bool
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ep := req.URL.Scheme + "://" + req.URL.Host + req.URL.Path
	t.mu.Lock()
	if t.urls[ep] == nil {
		t.urls[ep] = map[string]bool{}
	}
	t.urls[ep][req.URL.String()] = true
	t.mu.Unlock()
	return t.base.RoundTrip(req)
}
