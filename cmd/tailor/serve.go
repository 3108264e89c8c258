package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/internal/httpapi"
	"github.com/tailor-email/tailor/internal/httpserver"
	"github.com/tailor-email/tailor/jobs"
	"github.com/tailor-email/tailor/pipeline/delivery"
)

// readinessChecks probes Postgres and the profiles table.
func readinessChecks(b *backends.Backends) []httpserver.Check {
	return []httpserver.Check{
		{Name: "postgres", Fn: func(ctx context.Context) error { return b.Pool.Ping(ctx) }},
		{Name: "dynamodb", Fn: func(ctx context.Context) error {
			_, err := b.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(b.Names.Profiles)})
			return err
		}},
	}
}

var keyHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func serveCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "serve",
		Usage: "run the HTTP server: event ingestion (POST /v1/events), the sender API (/v1/messages), the preference center, /healthz, /readyz, Prometheus /metrics",
		Description: `Listens on --addr (loopback by default: put a proxy in front, or set --addr to expose it).
POST /v1/events takes one event or a batch of up to 500 (JSON array or NDJSON) with an API
key in the Authorization header ("Bearer KEY") that grants the events scope: create keys with
'tailor apikey create' (stored hashed in Postgres; a revocation takes effect within 2 s) or
pass bootstrap keys, which grant every scope, as --api-key-hash (from 'tailor apikey new').
An unknown or revoked key gets 401, a key without the scope 403. /healthz answers while the
process runs; /readyz asks Postgres and DynamoDB and answers 503 naming the backend that does
not; /metrics serves Prometheus metrics.

The sender API (keys with the send scope): POST /v1/messages/claim {"limit": 1-500,
"lease_seconds": 1-43200 (default 300), "campaign": ID (optional), "format": "json"|"mime"}
leases ready messages (send time reached, campaign running or rendered; recipients checked
again for subscription, consent and suppression); POST /v1/messages/ack {"outcomes": [{"id",
"receipt", "status": sent|bounced|complained|failed|retry, "bounce": hard|soft, "provider_id",
"reply", "reason", "retry_after_seconds"}]} records one outcome per message; GET
/v1/messages/ID shows a message's delivery record. An expired lease makes a message ready
again. Outcomes become events on the stream (email_sent, email_bounced, ...) through the
outbox this process publishes. format mime needs --from.

The preference center: with --webhook-secret, POST /v1/webhooks/preferences takes change sets
signed the Standard Webhooks way ('tailor webhook sign' shows the headers); with --token-key,
GET/POST /preferences/TOKEN is the hosted preference page and POST /unsubscribe/TOKEN the
RFC 8058 one-click unsubscribe (a GET of it shows the page), and GET /t/o/TOKEN (open pixel)
and GET /t/c/TOKEN (click redirect) record engagement of campaigns created with --track.
Give 'tailor work' the same --token-key and --public-url so rendered messages link here.`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", EnvVars: []string{"TAILOR_ADDR"}, Value: httpserver.AddrDefault, Usage: "listen address"},
			&cli.StringSliceFlag{Name: "api-key-hash", EnvVars: []string{"TAILOR_API_KEY_HASHES"}, Usage: "SHA-256 (hex) of a bootstrap API key, which grants every scope ('tailor apikey new' prints one); repeat or comma-separate"},
			&cli.IntFlag{Name: "shards", Value: shardsDefault, Usage: "shard count when the event stream must be created"},
			&cli.StringFlag{Name: "from", EnvVars: []string{"TAILOR_FROM"}, Usage: "From header of messages claimed with format mime, e.g. \"Shop <news@shop.example>\" (without it, format mime is refused)"},
			&cli.StringFlag{Name: "reply-to", EnvVars: []string{"TAILOR_REPLY_TO"}, Usage: "Reply-To header of messages claimed with format mime"},
			&cli.BoolFlag{Name: "ui", EnvVars: []string{"TAILOR_UI"}, Usage: "serve River's web UI at /riverui/ to keys with the admin scope (the browser asks: any user name, the key as password)"},
		}, servePreferenceFlags()...),
		Action: func(c *cli.Context) error {
			hashes := c.StringSlice("api-key-hash")
			for _, h := range hashes {
				if !keyHashRE.MatchString(h) {
					return usagef("--api-key-hash %q: want the 64-hex-digit SHA-256 that 'tailor apikey new' prints", h)
				}
			}
			b, err := openBackends(c)
			if err != nil {
				return err
			}
			defer b.Close()
			reg, err := app.Registry()
			if err != nil {
				return err
			}
			mux := http.NewServeMux()
			keys, err := app.APIKeys(b, hashes, slog.Default())
			if err != nil {
				return usagef("--api-key-hash: %v", err)
			}
			purge, err := preferenceRoutes(c, b, mux)
			if err != nil {
				return err
			}
			defer purge.Wait()
			if err := trackingRoutes(c, b, mux); err != nil {
				return err
			}
			ing, err := app.Ingestor(c.Context, b, c.Int("shards"))
			if err != nil {
				return err
			}
			h, err := httpapi.NewEventsHandler(httpapi.EventsConfig{Ingestor: ing, Logger: slog.Default()})
			if err != nil {
				return err
			}
			mux.Handle("POST /v1/events", httpapi.RequireScope(keys, httpapi.ScopeEvents, h))
			store, err := delivery.NewStore(delivery.StoreConfig{DB: b.Pool})
			if err != nil {
				return err
			}
			var mime *delivery.MIMEBuilder
			if from := c.String("from"); from != "" {
				if mime, err = delivery.NewMIMEBuilder(delivery.MIMEConfig{From: from, ReplyTo: c.String("reply-to")}); err != nil {
					return usagef("--from: %v", err)
				}
			}
			if err := httpapi.RegisterMessages(mux, keys, httpapi.MessagesConfig{Store: store, MIME: mime}); err != nil {
				return err
			}
			outbox, err := app.Outbox(c.Context, b, c.Int("shards"), slog.Default())
			if err != nil {
				return err
			}
			// Its own context: at a stop signal it finishes its batch and flushes (below).
			if err := outbox.Start(context.WithoutCancel(c.Context)); err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				flushOutbox(ctx, "serve", outbox)
			}()
			if c.Bool("ui") {
				rc, err := jobs.NewInsertClient(b.Pool)
				if err != nil {
					return err
				}
				ui, err := httpapi.NewRiverUI(rc, slog.Default())
				if err != nil {
					return err
				}
				if err := ui.Start(c.Context); err != nil {
					return fmt.Errorf("river ui: %w", err)
				}
				mux.Handle(httpapi.RiverUIPrefix+"/", httpapi.RequireScopeBrowser(keys, httpapi.ScopeAdmin, ui))
			}
			srv, err := httpserver.Start(httpserver.Config{Addr: c.String("addr"), Checks: readinessChecks(b), Mux: mux, Registry: reg})
			if err != nil {
				return err
			}
			<-c.Context.Done()
			ctx, cancel := context.WithTimeout(context.Background(), httpserver.ShutdownTimeoutDefault)
			defer cancel()
			return srv.Stop(ctx)
		},
	})
}
