package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/tracking"
)

// printDeliveryLine adds the delivery counts of a campaign's rendered messages to campaign
// status (nothing before anything rendered).
func printDeliveryLine(ctx context.Context, w io.Writer, b *backends.Backends, p *jobs.Progress) error {
	if p.Status == jobs.StatusDraft || p.Status == jobs.StatusScheduled {
		return nil
	}
	d, err := delivery.CampaignCounts(ctx, b.Pool, p.ID)
	if err != nil {
		return err
	}
	if d.Delivered()+d.Ready+d.Leased+d.Retrying+d.Scheduled == 0 {
		return nil // nothing rendered yet
	}
	fmt.Fprintf(w, "  delivery: %s\n", deliverySummary(d))
	if p.Track.IsZero() {
		return nil
	}
	e, err := tracking.CampaignEngagement(ctx, b.Pool, p.ID)
	if err != nil {
		return err
	}
	var parts []string
	for _, r := range engagementRows(p.Track, e, d.Sent) {
		if r.rate != "" {
			parts = append(parts, fmt.Sprintf("%s %d (%s of sent; %d %s)", r.unique, r.n, r.rate, r.total, r.hits))
		} else {
			parts = append(parts, fmt.Sprintf("%s %d (%d %s)", r.unique, r.n, r.total, r.hits))
		}
	}
	fmt.Fprintf(w, "  engagement: %s\n", strings.Join(parts, ", "))
	return nil
}

// engagementRow is one tracked kind's figures: messages opened (or clicked) at least once,
// their share of the messages sent, and every hit.
type engagementRow struct {
	unique, hits, rateName string
	n, total               int
	rate                   string // "" before anything was sent
}

func engagementRows(t tracking.Track, e tracking.Engagement, sent int) []engagementRow {
	rate := func(n int) string {
		if sent == 0 {
			return ""
		}
		return fmt.Sprintf("%.1f %%", 100*float64(n)/float64(sent))
	}
	var rows []engagementRow
	if t.Opens {
		rows = append(rows, engagementRow{"opened", "opens", "open rate", e.UniqueOpens, e.Opens, rate(e.UniqueOpens)})
	}
	if t.Clicks {
		rows = append(rows, engagementRow{"clicked", "clicks", "click rate", e.UniqueClicks, e.Clicks, rate(e.UniqueClicks)})
	}
	return rows
}

func deliverySummary(d delivery.Counts) string {
	parts := []string{fmt.Sprintf("sent %d", d.Sent), fmt.Sprintf("bounced %d (hard %d, soft %d)", d.BouncedHard+d.BouncedSoft, d.BouncedHard, d.BouncedSoft),
		fmt.Sprintf("complained %d", d.Complained), fmt.Sprintf("failed %d", d.Failed), fmt.Sprintf("suppressed %d", d.Suppressed)}
	if d.Exported > 0 {
		parts = append(parts, fmt.Sprintf("exported %d", d.Exported))
	}
	parts = append(parts, fmt.Sprintf("waiting: ready %d, leased %d, retrying %d, scheduled %d", d.Ready, d.Leased, d.Retrying, d.Scheduled))
	return strings.Join(parts, ", ")
}

// printDeliveryReport adds the delivery section to campaign report.
func printDeliveryReport(ctx context.Context, w io.Writer, b *backends.Backends, p *jobs.Progress) error {
	d, err := delivery.CampaignCounts(ctx, b.Pool, p.ID)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "delivery")
	for _, r := range []struct {
		k string
		n int
	}{{"sent", d.Sent}, {"bounced hard", d.BouncedHard}, {"bounced soft", d.BouncedSoft}, {"complained", d.Complained}, {"failed", d.Failed},
		{"suppressed", d.Suppressed}, {"exported", d.Exported}, {"ready", d.Ready}, {"leased", d.Leased}, {"retrying", d.Retrying}, {"scheduled", d.Scheduled}} {
		fmt.Fprintf(w, "  %-12s %d\n", r.k, r.n)
	}
	if p.Track.IsZero() {
		return nil
	}
	e, err := tracking.CampaignEngagement(ctx, b.Pool, p.ID)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "engagement (tracked; opens undercount where images are blocked and overcount where mail apps prefetch them)")
	for _, r := range engagementRows(p.Track, e, d.Sent) {
		fmt.Fprintf(w, "  %-12s %d\n", r.unique, r.n)
		if r.rate != "" {
			fmt.Fprintf(w, "  %-12s %s\n", r.rateName, r.rate)
		}
		fmt.Fprintf(w, "  %-12s %d\n", r.hits, r.total)
	}
	return nil
}
