package main

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/pipeline/delivery"
)

// relayGCPercent is tailor relay's GOGC (see gcFlags): its heap is small and bounded (about 11 MB
// live on the 100 000-message benchmark), so a higher value spends less CPU on collection.
const relayGCPercent = 300

func relayCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "relay",
		Usage: "deliver rendered messages over SMTP (--smtp) or Amazon SES (--ses), acking each outcome",
		Description: `The reference sender. It claims ready messages straight from Postgres (the same store and
lease semantics as POST /v1/messages/claim, without the HTTP hop: it is one of our own
processes), builds each as RFC 5322 MIME, sends it with --concurrency messages at once over
pooled SMTP connections (or SES v2 SendEmail), and acks the answer: 2xx sent, 5xx bounced
(hard, the address joins the suppression list), 4xx retried with exponential backoff from
--retry-base (a soft bounce on the --max-attempts-th try), a refusal of the sender or a
network error retried. --rate and --domain-rate bound messages per second overall and per
recipient domain. A progress line per campaign is logged every --progress. Outcomes become
events on the stream through the delivery outbox this process also publishes.

--smtp smtp://[user:password@]host[:port] uses STARTTLS when offered (--smtp-tls starttls
requires it, off never), smtps:// TLS from the start; AUTH PLAIN with --smtp-user and
--smtp-password (or the URL's user info), refused over plain text except to loopback.
--ses uses the standard AWS configuration (AWS_REGION, credentials); --ses-endpoint points it
at another endpoint (a VPC endpoint; the tests use the aws-ses-v2-local emulator).

It runs until stopped (SIGINT/SIGTERM: it stops claiming, sends and acks what it holds), or
with --campaign and --exit-when-done until that campaign has nothing left to deliver.`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "smtp", EnvVars: []string{"TAILOR_RELAY_SMTP"}, Usage: "SMTP server URL: smtp://[user:password@]host[:port] or smtps://..."},
			&cli.BoolFlag{Name: "ses", Usage: "send through Amazon SES v2 instead of SMTP"},
			&cli.StringFlag{Name: "ses-configuration-set", Usage: "SES configuration set (event publishing)"},
			&cli.StringFlag{Name: "ses-endpoint", EnvVars: []string{"AWS_ENDPOINT_URL_SESV2"}, Usage: "SES API endpoint URL (default: the region's; a VPC endpoint or an emulator)"},
			&cli.StringFlag{Name: "smtp-tls", Value: "auto", Usage: "STARTTLS on smtp:// URLs: auto (when offered), starttls (required) or off"},
			&cli.StringFlag{Name: "smtp-user", EnvVars: []string{"TAILOR_SMTP_USER"}, Usage: "AUTH PLAIN user (default: the URL's)"},
			&cli.StringFlag{Name: "smtp-password", EnvVars: []string{"TAILOR_SMTP_PASSWORD"}, Usage: "AUTH PLAIN password (default: the URL's)"},
			&cli.StringFlag{Name: "smtp-helo", Usage: "EHLO name (default: the host name)"},
			&cli.IntFlag{Name: "smtp-messages-per-conn", Value: delivery.SMTPMessagesPerConnDefault, Usage: "messages per SMTP connection before a new one"},
			&cli.StringFlag{Name: "from", EnvVars: []string{"TAILOR_FROM"}, Required: true, Usage: "From header, e.g. \"Shop <news@shop.example>\" (its address is the bounce address unless --envelope-from)"},
			&cli.StringFlag{Name: "reply-to", EnvVars: []string{"TAILOR_REPLY_TO"}, Usage: "Reply-To header"},
			&cli.StringFlag{Name: "envelope-from", Usage: "SMTP MAIL FROM (bounce address); default the From address"},
			&cli.Int64Flag{Name: "campaign", Aliases: []string{"c"}, Usage: "deliver only this campaign's messages (default: any campaign)"},
			&cli.BoolFlag{Name: "exit-when-done", Usage: "with --campaign: exit once the campaign has nothing left to deliver"},
			&cli.IntFlag{Name: "concurrency", Value: delivery.ConcurrencyDefault, Usage: "messages sent at once (and SMTP connections)"},
			&cli.Float64Flag{Name: "rate", Usage: "messages per second at most, over all recipients (0: unbounded)"},
			&cli.Float64Flag{Name: "domain-rate", Usage: "messages per second at most to one recipient domain (0: unbounded)"},
			&cli.IntFlag{Name: "claim-batch", Value: delivery.ClaimBatchDefault, Usage: "messages per claim (1-500)"},
			&cli.IntFlag{Name: "claimers", Value: delivery.ClaimersDefault, Usage: "claims in flight at once (1-8)"},
			&cli.DurationFlag{Name: "lease", Value: delivery.LeaseDefault, Usage: "how long claimed messages stay this relay's"},
			&cli.IntFlag{Name: "max-attempts", Value: delivery.MaxAttemptsDefault, Usage: "temporary refusals (4xx) before a soft bounce"},
			&cli.DurationFlag{Name: "retry-base", Value: delivery.RetryBaseDefault, Usage: "first retry's delay; each further one doubles, up to --retry-max"},
			&cli.DurationFlag{Name: "retry-max", Value: delivery.RetryMaxDefault, Usage: "longest retry delay"},
			&cli.DurationFlag{Name: "poll-interval", Value: 200 * time.Millisecond, Usage: "wait after a claim found nothing"},
			&cli.DurationFlag{Name: "progress", Value: delivery.ProgressIntervalDefault, Usage: "how often to log a progress line per campaign (0: only at the end)"},
			&cli.DurationFlag{Name: "stop-timeout", Value: 30 * time.Second, Usage: "how long held messages may still be sent after a stop signal"},
			&cli.IntFlag{Name: "shards", Value: shardsDefault, Usage: "shard count when the event stream must be created"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile of this process to FILE until it stops"},
			metricsAddrFlag("RELAY", "127.0.0.1:9104"),
		}, gcFlags("RELAY", relayGCPercent, 0)...),
		Action: func(c *cli.Context) error {
			o, err := relayOptions(c)
			if err != nil {
				return err
			}
			if err := tuneGC(c); err != nil {
				return err
			}
			stopProfile, err := startCPUProfile(c.String("cpuprofile"))
			if err != nil {
				return err
			}
			defer stopProfile()
			b, err := openBackends(c)
			if err != nil {
				return err
			}
			defer b.Close()
			stopMetrics, err := startMetrics(c, b)
			if err != nil {
				return err
			}
			defer stopMetrics()
			relay, store, closeSender, err := app.Relay(b, o)
			if err != nil {
				return usagef("%v", err)
			}
			defer closeSender()
			if c.Bool("exit-when-done") {
				if _, err := store.CampaignDone(c.Context, o.CampaignID); err != nil {
					return usagef("--campaign: %v", err)
				}
			}
			outbox, err := app.Outbox(c.Context, b, c.Int("shards"), slog.Default())
			if err != nil {
				return err
			}
			if err := outbox.Start(context.WithoutCancel(c.Context)); err != nil {
				return err
			}
			defer func() {
				// The last acks' events go out before the process does.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				flushOutbox(ctx, "relay", outbox)
			}()
			// The relay runs on its own context so a signal becomes a soft stop.
			if err := relay.Start(context.WithoutCancel(c.Context)); err != nil {
				return err
			}
			slog.Info("relay running", "campaign", o.CampaignID, "concurrency", c.Int("concurrency"))
			waitErr := waitRelay(c, store, o.CampaignID)
			stopCtx, cancel := context.WithTimeout(context.Background(), c.Duration("stop-timeout"))
			defer cancel()
			if err := relay.Stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return waitErr
		},
	})
}

// waitRelay returns at a stop signal, or with --exit-when-done once the campaign is done.
func waitRelay(c *cli.Context, store *delivery.Store, campaign int64) error {
	if !c.Bool("exit-when-done") {
		<-c.Context.Done()
		return nil
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.Context.Done():
			return nil
		case <-t.C:
			done, err := store.CampaignDone(c.Context, campaign)
			if err != nil && c.Context.Err() == nil {
				slog.Warn("relay: campaign state", "err", err)
			}
			if done {
				slog.Info("relay: campaign done", "campaign", campaign)
				return nil
			}
		}
	}
}

func relayOptions(c *cli.Context) (app.RelayOptions, error) {
	var o app.RelayOptions
	switch {
	case c.String("smtp") == "" && !c.Bool("ses"):
		return o, usagef("say where to send: --smtp smtp://host:port or --ses")
	case c.String("smtp") != "" && c.Bool("ses"):
		return o, usagef("--smtp and --ses: choose one")
	case c.Bool("exit-when-done") && c.Int64("campaign") <= 0:
		return o, usagef("--exit-when-done needs --campaign ID")
	case c.Int64("campaign") < 0:
		return o, usagef("--campaign %d: want a campaign ID", c.Int64("campaign"))
	case c.Int("concurrency") < 1 || c.Int("concurrency") > 1000:
		return o, usagef("--concurrency %d: want 1 to 1000", c.Int("concurrency"))
	case c.Int("claim-batch") < 1 || c.Int("claim-batch") > delivery.ClaimBatchMax:
		return o, usagef("--claim-batch %d: want 1 to %d", c.Int("claim-batch"), delivery.ClaimBatchMax)
	case c.Int("claimers") < 1 || c.Int("claimers") > 8:
		return o, usagef("--claimers %d: want 1 to 8", c.Int("claimers"))
	case c.Float64("rate") < 0 || c.Float64("domain-rate") < 0:
		return o, usagef("--rate and --domain-rate: want 0 (unbounded) or more")
	case c.Duration("lease") < time.Second || c.Duration("lease") > delivery.LeaseMax:
		return o, usagef("--lease %v: want 1s to %v", c.Duration("lease"), delivery.LeaseMax)
	case c.Int("max-attempts") < 1:
		return o, usagef("--max-attempts %d: want 1 or more", c.Int("max-attempts"))
	case c.Int("smtp-messages-per-conn") < 1:
		return o, usagef("--smtp-messages-per-conn %d: want 1 or more", c.Int("smtp-messages-per-conn"))
	case c.Duration("retry-base") <= 0 || c.Duration("retry-max") < c.Duration("retry-base"):
		return o, usagef("--retry-base must be positive and --retry-max at least --retry-base")
	case c.Duration("poll-interval") < 0:
		return o, usagef("--poll-interval %v: want 0 or more", c.Duration("poll-interval"))
	case c.Duration("progress") < 0:
		return o, usagef("--progress %v: want 0 or more", c.Duration("progress"))
	}
	tlsMode, err := delivery.ParseTLSMode(c.String("smtp-tls"))
	if err != nil {
		return o, usagef("--smtp-tls: %v", err)
	}
	o.SMTP = delivery.SMTPConfig{URL: c.String("smtp"), TLS: tlsMode, Username: c.String("smtp-user"), Password: c.String("smtp-password"),
		HelloName: c.String("smtp-helo"), MaxConns: c.Int("concurrency"), MessagesPerConn: c.Int("smtp-messages-per-conn")}
	o.SESConfigurationSet = c.String("ses-configuration-set")
	if ep := c.String("ses-endpoint"); ep != "" {
		if u, err := url.Parse(ep); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return o, usagef("--ses-endpoint %q: want an http(s) URL like https://email.eu-west-1.amazonaws.com", ep)
		}
		o.SESEndpoint = ep
	}
	o.MIME = delivery.MIMEConfig{From: c.String("from"), ReplyTo: c.String("reply-to")}
	o.CampaignID = c.Int64("campaign")
	progress := c.Duration("progress")
	if progress == 0 {
		progress = 1<<63 - 1 // only the final line
	}
	o.Relay = delivery.RelayConfig{EnvelopeFrom: c.String("envelope-from"), Concurrency: c.Int("concurrency"), Rate: c.Float64("rate"),
		DomainRate: c.Float64("domain-rate"), ClaimBatch: c.Int("claim-batch"), Claimers: c.Int("claimers"), Lease: c.Duration("lease"), MaxAttempts: c.Int("max-attempts"),
		RetryBase: c.Duration("retry-base"), RetryMax: c.Duration("retry-max"), ProgressInterval: progress,
		PollInterval: max(c.Duration("poll-interval"), time.Millisecond)}
	return o, nil
}

// flushOutbox stops a process's outbox publisher after its batch in progress, then publishes
// what is left, so that the last acks' events go out before the process does.
func flushOutbox(ctx context.Context, process string, outbox *delivery.Outbox) {
	err := outbox.Stop(ctx)
	if err == nil {
		err = outbox.Flush(ctx)
	}
	if err != nil {
		slog.Warn(process+": events left in the outbox for the next publisher", "err", err)
	}
}
