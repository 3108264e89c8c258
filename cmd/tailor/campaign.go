package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/templates"
)

// whenFlags say when and how a campaign sends; create and schedule share them.
func whenFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "send-at", Usage: "when messages become claimable: RFC 3339, now, +DURATION (+2h) or local:HH:MM (each recipient's time zone) (default: a draft)"},
		&cli.StringFlag{Name: "timezone", Value: "UTC", Usage: "time zone of profiles without one, for local:HH:MM and --quiet-hours (IANA name)"},
	}
}

func campaignCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "campaign",
		Usage: "create, schedule, pause, resume, cancel and watch campaigns",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a campaign from a template and an audience segment (a draft unless --send-at)",
				ArgsUsage: " ",
				Description: `Copies the template (validated first) into the campaign. With --send-at the campaign is
scheduled and its start job enqueued in the same transaction; without, it is a draft for
'tailor campaign schedule'. 'tailor work' processes fan it out and render it shortly before
the send time. The segment is an expr-lang expression over profile fields, e.g.
   --segment 'true'                                  everyone with an email address
   --segment 'country == "FR" && count_product_view >= 3'
--topic requires a subscription to the topic and email marketing consent; the suppression
list applies to every campaign. --dry-run writes nothing: it prints the audience, who is
left out and why, a sample per A/B variant and the content API calls to expect.
--trigger makes a triggered campaign (schedule it to start listening): the consumer
evaluates EXPR over event.* and the updated profile, e.g.
   --trigger 'event.type == "add_to_cart"' --delay 1h --cancel-if 'last_purchase.at > triggered_at' --once-per 7d`,
				Flags: append(whenFlags(),
					&cli.StringFlag{Name: "template", Aliases: []string{"t"}, Required: true, Usage: "a published template, NAME or NAME@VERSION (default: its latest version), or a template folder"},
					&cli.StringFlag{Name: "segment", Aliases: []string{"s"}, Required: true, Usage: "audience expression over profile fields"},
					&cli.StringFlag{Name: "name", Usage: "campaign name (default: the template's name)"},
					&cli.StringFlag{Name: "topic", Usage: "topic the recipients must be subscribed to (with email marketing consent)"},
					&cli.StringFlag{Name: "quiet-hours", Usage: "recipient-local HH:MM-HH:MM during which messages are held until the window ends, e.g. 21:00-08:00"},
					&cli.StringFlag{Name: "max-per-customer", Usage: "frequency cap across campaigns, N/DURATION such as 2/24h (none: no cap)"},
					&cli.StringFlag{Name: "trigger", Usage: "make a triggered campaign: expression over event.* and the updated profile"},
					&cli.DurationFlag{Name: "delay", Usage: "with --trigger: render this long after the event"},
					&cli.StringFlag{Name: "cancel-if", Usage: "with --trigger: do not send when this holds after the delay (profile fields, event.*, triggered_at)"},
					&cli.StringFlag{Name: "once-per", Usage: "with --trigger: at most one message per customer per window, e.g. 7d"},
					trackFlag,
					&cli.BoolFlag{Name: "dry-run", Usage: "write nothing: print the audience, exclusions, samples per variant and expected content calls"},
					&cli.IntFlag{Name: "sample", Value: 200, Usage: "with --dry-run: profiles rendered to count content calls"},
					&cli.BoolFlag{Name: "wait", Usage: "wait until the campaign is rendered (needs 'tailor work' running)"},
					&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "with --wait: give up after this long"},
				),
				Action: campaignCreate,
			},
			{
				Name:      "schedule",
				Usage:     "schedule a draft (a triggered draft starts listening)",
				ArgsUsage: "ID",
				Flags:     whenFlags(),
				Action: func(c *cli.Context) error {
					id, err := campaignID(c)
					if err != nil {
						return err
					}
					var at jobs.SendAt
					if s := c.String("send-at"); s != "" {
						if at, err = jobs.ParseSendAt(s, time.Now()); err != nil {
							return usageError{err}
						}
					}
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					rc, err := jobs.NewInsertClient(b.Pool)
					if err != nil {
						return err
					}
					camp, err := jobs.Schedule(c.Context, b.Pool, rc, id, at)
					if errors.Is(err, jobs.ErrInvalidCampaign) {
						return usageError{err}
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "campaign %d %s%s\n", camp.ID, camp.Status, sendAtSuffix(camp))
					return nil
				},
			},
			transitionCommand(jobs.ActionPause, "hold a scheduled or running campaign (render jobs snooze within 5s)", jobs.Pause),
			transitionCommand(jobs.ActionResume, "continue a paused campaign where it stopped", jobs.Resume),
			transitionCommand(jobs.ActionCancel, "stop a campaign for good: unclaimed messages are cancelled", jobs.Cancel),
			{
				Name:      "status",
				Usage:     "show a campaign's progress; --watch follows it (a progress bar on a terminal)",
				ArgsUsage: "ID",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "follow until the campaign settles"},
					&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "with --watch: refresh period"},
				},
				Action: campaignAction(campaignStatus),
			},
			{
				Name:  "list",
				Usage: "list campaigns, newest first, with their counts",
				Flags: []cli.Flag{&cli.IntFlag{Name: "limit", Value: 20, Usage: "how many"}},
				Action: func(c *cli.Context) error {
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					list, err := jobs.ListCampaigns(c.Context, b.Pool, c.Int("limit"))
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tNAME\tTEMPLATE\tKIND\tSTATUS\tSEND AT\tAUDIENCE\tRENDERED\tEXCLUDED\tOTHER\tCREATED")
					for _, s := range list {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", s.ID, s.Name, s.Template, s.Kind, s.Status, cmpStr(s.SendAt, "-"),
							s.Audience, s.Rendered, s.Excluded, s.Other, s.CreatedAt.Format(time.RFC3339))
					}
					return tw.Flush()
				},
			},
			{
				Name:      "show",
				Usage:     "show one campaign's definition and status",
				ArgsUsage: "ID",
				Action: campaignAction(func(c *cli.Context, b *backends.Backends, id int64) error {
					camp, err := jobs.GetCampaign(c.Context, b.Pool, id)
					if err != nil {
						return err
					}
					printDefinition(c.App.Writer, camp)
					return nil
				}),
			},
			{
				Name:      "report",
				Usage:     "final numbers of a campaign: outcomes, reasons, per variant and per content source",
				ArgsUsage: "ID",
				Action: campaignAction(func(c *cli.Context, b *backends.Backends, id int64) error {
					p, err := jobs.GetProgress(c.Context, b.Pool, id)
					if err != nil {
						return err
					}
					printCampaignReport(c.App.Writer, p)
					return printDeliveryReport(c.Context, c.App.Writer, b, p)
				}),
			},
		},
	})
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// campaignAction reads the campaign ID argument, opens the backends and runs fn.
func campaignAction(fn func(c *cli.Context, b *backends.Backends, id int64) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		id, err := campaignID(c)
		if err != nil {
			return err
		}
		b, err := openBackends(c)
		if err != nil {
			return err
		}
		defer b.Close()
		return fn(c, b, id)
	}
}

func campaignID(c *cli.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Args().First(), 10, 64)
	if err != nil || c.NArg() != 1 {
		return 0, usagef("campaign %s: want one campaign ID after the flags, e.g. tailor campaign %s 3", c.Command.Name, c.Command.Name)
	}
	return id, nil
}

func transitionCommand(action, usage string, fn func(context.Context, *pgxpool.Pool, int64) (*jobs.Campaign, error)) *cli.Command {
	return &cli.Command{
		Name:      action,
		Usage:     usage,
		ArgsUsage: "ID",
		Action: campaignAction(func(c *cli.Context, b *backends.Backends, id int64) error {
			camp, err := fn(c.Context, b.Pool, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "campaign %d %s\n", camp.ID, camp.Status)
			return nil
		}),
	}
}

// campaignInput reads the flags that define a campaign, before any backend is opened.
func campaignInput(c *cli.Context, now time.Time) (jobs.NewCampaign, error) {
	in := jobs.NewCampaign{Name: c.String("name"), Segment: c.String("segment"), Topic: c.String("topic"), Timezone: c.String("timezone")}
	var err error
	if _, err := jobs.ParseSegment(in.Segment); err != nil {
		return in, usageError{fmt.Errorf("--segment: %w", err)}
	}
	if _, err := jobs.LoadZone(in.Timezone); err != nil {
		return in, usageError{fmt.Errorf("--timezone: %w", err)}
	}
	if s := c.String("send-at"); s != "" {
		if in.SendAt, err = jobs.ParseSendAt(s, now); err != nil {
			return in, usageError{err}
		}
	}
	if in.QuietHours, err = jobs.ParseQuietHours(c.String("quiet-hours")); err != nil {
		return in, usageError{err}
	}
	if in.Cap, err = jobs.ParseCap(c.String("max-per-customer")); err != nil {
		return in, usageError{err}
	}
	if in.Track, err = trackInput(c); err != nil {
		return in, err
	}
	if expr := c.String("trigger"); expr != "" {
		t := &jobs.Trigger{Expr: expr, Delay: c.Duration("delay"), CancelIf: c.String("cancel-if")}
		if s := c.String("once-per"); s != "" {
			if t.OncePer, err = jobs.ParseDays(s); err != nil || t.OncePer <= 0 {
				return in, usagef("--once-per %q: want a duration such as 7d or 24h", s)
			}
		}
		in.Trigger = t
	} else if c.IsSet("delay") || c.IsSet("cancel-if") || c.IsSet("once-per") {
		return in, usagef("--delay, --cancel-if and --once-per need --trigger")
	}
	if err := jobs.ValidateCampaign(c.Context, nil, jobs.NewCampaign{Segment: in.Segment, Template: &templates.Template{},
		Timezone: in.Timezone, SendAt: in.SendAt, Trigger: in.Trigger}); err != nil {
		return in, usageError{err}
	}
	return in, nil
}

func campaignCreate(c *cli.Context) error {
	in, err := campaignInput(c, time.Now())
	if err != nil {
		return err
	}
	tpl, err := campaignTemplate(c, nil, c.String("template"))
	if err != nil {
		return err
	}
	b, err := openBackends(c)
	if err != nil {
		return err
	}
	defer b.Close()
	if tpl == nil {
		if tpl, err = campaignTemplate(c, b.Pool, c.String("template")); err != nil {
			return err
		}
	}
	in.Template = tpl
	if err := jobs.ValidateCampaign(c.Context, b.Pool, in); err != nil {
		if errors.Is(err, jobs.ErrInvalidCampaign) || errors.Is(err, jobs.ErrInvalidSegment) || errors.Is(err, jobs.ErrInvalidSchedule) {
			return usageError{err}
		}
		return err
	}
	if c.Bool("dry-run") {
		profiles, err := app.ProfileReader(c.Context, b)
		if err != nil {
			return err
		}
		res, err := jobs.DryRun(c.Context, jobs.DryRunConfig{Pool: b.Pool, Profiles: profiles, Sample: c.Int("sample")}, in)
		if err != nil {
			return err
		}
		printDryRun(c.App.Writer, res)
		return nil
	}
	rc, err := jobs.NewInsertClient(b.Pool)
	if err != nil {
		return err
	}
	camp, err := jobs.CreateCampaign(c.Context, b.Pool, rc, in)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "campaign %d created (%s): template %s v%d, segment %s%s\n", camp.ID, camp.Status, camp.TemplateName,
		camp.TemplateVersion, camp.Segment, sendAtSuffix(camp))
	if !c.Bool("wait") || camp.Status == jobs.StatusDraft {
		return nil
	}
	ctx, cancel := contextWithTimeout(c, c.Duration("timeout"))
	defer cancel()
	done, err := jobs.WaitCampaign(ctx, b.Pool, camp.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "campaign %d %s: audience %d\n", done.ID, done.Status, done.AudienceCount)
	if done.Status == jobs.StatusFailed {
		return errors.New(done.Error)
	}
	return nil
}

func sendAtSuffix(c *jobs.Campaign) string {
	if s := c.SendAt.String(); s != "" {
		return ", send at " + s
	}
	return ""
}

func printDefinition(w io.Writer, c *jobs.Campaign) {
	fmt.Fprintf(w, "campaign %d %q\n  kind      %s\n  template  %s v%d\n  segment   %s\n  status    %s\n  audience  %d\n", c.ID, c.Name, c.Kind,
		c.TemplateName, c.TemplateVersion, c.Segment, c.Status, c.AudienceCount)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-9s %s\n", k, v)
		}
	}
	line("topic", c.Topic)
	line("send at", c.SendAt.String())
	line("timezone", c.Timezone)
	line("quiet", c.QuietHours.String())
	line("cap", c.Cap.String())
	line("track", c.Track.String())
	if t := c.Trigger; t != nil {
		line("trigger", t.Expr)
		line("delay", t.Delay.String())
		line("cancel if", t.CancelIf)
		if t.OncePer > 0 {
			line("once per", t.OncePer.String())
		}
	}
	line("error", c.Error)
}

// isTerminal reports whether w is a terminal (a progress bar can be redrawn in place).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func campaignStatus(c *cli.Context, b *backends.Backends, id int64) error {
	w := c.App.Writer
	tty := isTerminal(w)
	var first *jobs.Progress
	var firstAt time.Time
	last := ""
	for {
		p, err := jobs.GetProgress(c.Context, b.Pool, id)
		if err != nil {
			return err
		}
		if first == nil {
			first, firstAt = p, time.Now()
		}
		eta := ""
		if done := p.Processed - first.Processed; done > 0 && p.FanoutDone && p.AudienceCount > p.Processed {
			rate := float64(done) / time.Since(firstAt).Seconds()
			eta = (time.Duration(float64(p.AudienceCount-p.Processed)/rate) * time.Second).Round(time.Second).String()
		}
		line := statusLine(p, eta)
		switch {
		case !c.Bool("watch"):
			fmt.Fprintln(w, line)
			printBreakdown(w, p)
			return printDeliveryLine(c.Context, w, b, p)
		case tty:
			fmt.Fprintf(w, "\r\033[K%s %s", progressBar(p, 24), line)
		case line != last:
			fmt.Fprintln(w, line)
		}
		last = line
		if p.Settled() {
			if tty {
				fmt.Fprintln(w)
			}
			printBreakdown(w, p)
			return printDeliveryLine(c.Context, w, b, p)
		}
		select {
		case <-c.Context.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return nil
		case <-time.After(c.Duration("interval")):
		}
	}
}

// progressBar draws processed/audience as a bar of width cells.
func progressBar(p *jobs.Progress, width int) string {
	frac := 0.0
	if p.AudienceCount > 0 {
		frac = min(float64(p.Processed)/float64(p.AudienceCount), 1)
	}
	full := int(frac * float64(width))
	return "[" + strings.Repeat("█", full) + strings.Repeat("░", width-full) + fmt.Sprintf("] %3.0f%%", frac*100)
}

func statusLine(p *jobs.Progress, eta string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "campaign %d %s: audience %d", p.ID, p.Status, p.AudienceCount)
	if !p.FanoutDone && p.Kind == jobs.KindBatch && p.Status != jobs.StatusDraft {
		b.WriteString(" (scanning)")
	}
	fmt.Fprintf(&b, ", rendered %d", p.Counters[jobs.MessageRendered])
	if ex := p.Reasons("reason:"); p.Counters[jobs.MessageExcluded] > 0 {
		var parts []string
		for _, r := range ex {
			if r.Key != "skip_recipient" && r.Key != "budget_exceeded" && r.Key != "render_error" {
				parts = append(parts, fmt.Sprintf("%s %d", r.Key, r.N))
			}
		}
		fmt.Fprintf(&b, ", excluded %d (%s)", p.Counters[jobs.MessageExcluded], strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, ", skipped %d, failed %d", p.Counters[jobs.MessageSkipped], p.Counters[jobs.MessageFailed])
	var fb []string
	for name, outcomes := range p.Sources() {
		if n := outcomes[templates.OutcomeFallback] + outcomes[templates.OutcomeStale]; n > 0 {
			fb = append(fb, fmt.Sprintf("%s %d", name, n))
		}
	}
	if len(fb) > 0 {
		fmt.Fprintf(&b, ", fallbacks %s", strings.Join(sortedStrings(fb), ", "))
	}
	if n := p.Counters[jobs.CounterNextDay]; n > 0 {
		fmt.Fprintf(&b, ", %d next day (local time passed)", n)
	}
	if eta != "" {
		fmt.Fprintf(&b, ", ETA %s", eta)
	}
	return b.String()
}

func printBreakdown(w io.Writer, p *jobs.Progress) {
	if p.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", p.Error)
	}
	for _, r := range p.Reasons("scan:") {
		fmt.Fprintf(w, "  left out by the scan: %s %d\n", r.Key, r.N)
	}
	if !p.Track.IsZero() {
		fmt.Fprintf(w, "  tracking: %s\n", p.Track)
	}
}

func printCampaignReport(w io.Writer, p *jobs.Progress) {
	fmt.Fprintf(w, "campaign %d %q %s (%s)\n", p.ID, p.Name, p.Status, p.Kind)
	fmt.Fprintf(w, "  audience   %d\n  processed  %d\n", p.AudienceCount, p.Processed)
	for _, k := range []string{jobs.MessageRendered, jobs.MessageExcluded, jobs.MessageSkipped, jobs.MessageFailed, jobs.MessageCancelled} {
		fmt.Fprintf(w, "  %-10s %d\n", k, p.Counters[k])
	}
	section := func(title, prefix string) {
		rs := p.Reasons(prefix)
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(w, "%s\n", title)
		for _, r := range rs {
			fmt.Fprintf(w, "  %-40s %d\n", r.Key, r.N)
		}
	}
	section("reasons", "reason:")
	section("left out by the scan", "scan:")
	section("variants (rendered)", "variant:")
	if srcs := p.Sources(); len(srcs) > 0 {
		fmt.Fprintln(w, "content sources")
		for _, name := range sortedKeys(srcs) {
			var parts []string
			for _, o := range sortedKeys(srcs[name]) {
				parts = append(parts, fmt.Sprintf("%s %d", o, srcs[name][o]))
			}
			fmt.Fprintf(w, "  %-12s %s\n", name, strings.Join(parts, ", "))
		}
	}
	if n := p.Counters[jobs.CounterNextDay]; n > 0 {
		fmt.Fprintf(w, "next day (local time passed at start)  %d\n", n)
	}
	if p.Error != "" {
		fmt.Fprintf(w, "error: %s\n", p.Error)
	}
}

// campaignTemplate resolves --template: an existing folder (or anything with a slash in it) is
// loaded and validated as it is; anything else names a published version, NAME or NAME@VERSION
// (default: the latest). It is called before connecting, with db nil, to refuse a bad folder
// early; then again with the database for published names.
func campaignTemplate(c *cli.Context, db templates.DB, ref string) (*templates.Template, error) {
	if info, err := os.Stat(ref); (err == nil && info.IsDir()) || strings.ContainsRune(ref, os.PathSeparator) {
		tpl, err := templates.Load(ref)
		if err != nil {
			return nil, usageError{fmt.Errorf("--template: %w", err)}
		}
		return tpl, nil
	}
	if db == nil {
		return nil, nil
	}
	return publishedTemplate(c, db, ref)
}

func publishedTemplate(c *cli.Context, db templates.DB, ref string) (*templates.Template, error) {
	name, ver, hasVer := strings.Cut(ref, "@")
	store := templates.NewStore(db)
	var (
		tpl *templates.Template
		err error
	)
	if hasVer {
		v, perr := strconv.Atoi(ver)
		if perr != nil || v < 1 {
			return nil, usagef("--template %q: the version after @ must be a positive number", ref)
		}
		tpl, _, err = store.Get(c.Context, name, v)
	} else {
		tpl, _, err = store.Latest(c.Context, name)
	}
	if errors.Is(err, templates.ErrVersionNotFound) {
		return nil, usagef("--template %q: no such folder, and no published template by that name (publish one with 'tailor template publish DIR')", ref)
	}
	return tpl, err
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func sortedStrings(s []string) []string { slices.Sort(s); return s }

func printDryRun(w io.Writer, r *jobs.DryRunResult) {
	fmt.Fprintf(w, "dry run (nothing written): %d profiles scanned, %d in the segment, audience %d\n", r.Scanned, r.Matched, r.Eligible)
	if len(r.LeftOut) > 0 {
		fmt.Fprintln(w, "left out:")
		for _, k := range sortedKeys(r.LeftOut) {
			fmt.Fprintf(w, "  %-20s %d\n", k, r.LeftOut[k])
		}
	}
	for _, s := range r.Samples {
		name := cmpStr(s.Variant, "(no variants)")
		if s.Err != nil {
			fmt.Fprintf(w, "\n──── sample, variant %s, customer %s: %v\n", name, s.CustomerID, s.Err)
			continue
		}
		fmt.Fprintf(w, "\n──── sample, variant %s, customer %s\nSubject: %s\n\n%s\n", name, s.CustomerID, s.Message.Subject, strings.TrimSpace(s.Message.Text))
		for src, o := range s.Message.Provenance.Sources {
			fmt.Fprintf(w, "  content %s: %s %s\n", src, o.Outcome, o.Reason)
		}
	}
	if r.SampleSize > 0 {
		fmt.Fprintf(w, "\ncontent API calls (distinct URLs over a sample of %d, estimated for the audience):\n", r.SampleSize)
		total := 0
		for _, c := range r.Calls {
			fmt.Fprintf(w, "  %-60s %d in sample, ~%d for the campaign\n", c.Endpoint, c.Distinct, c.Estimated)
			total += c.Estimated
		}
		fmt.Fprintf(w, "  total ~%d\n", total)
	}
}
