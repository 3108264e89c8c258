package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/delivery"
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
	return nil
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
	return nil
}
