package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/internal/httpapi"
	"github.com/tailor-email/tailor/internal/httpserver"
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
		Usage: "run the HTTP server: event ingestion (POST /v1/events), the preference center, /healthz, /readyz, Prometheus /metrics",
		Description: `Listens on --addr (loopback by default: put a proxy in front, or set --addr to expose it).
POST /v1/events takes one event or a batch of up to 500 (JSON array or NDJSON) with an API
key in the Authorization header ("Bearer KEY"); create keys with 'tailor apikey new' and
give the server only their hashes. /healthz answers while the process runs; /readyz asks
Postgres and DynamoDB and answers 503 naming the backend that does not; /metrics serves
Prometheus metrics.

The preference center: with --webhook-secret, POST /v1/webhooks/preferences takes change sets
signed the Standard Webhooks way ('tailor webhook sign' shows the headers); with --token-key,
GET/POST /preferences/TOKEN is the hosted preference page and POST /unsubscribe/TOKEN the
RFC 8058 one-click unsubscribe (a GET of it shows the page). Give 'tailor work' the same
--token-key and --public-url so rendered messages link here.`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", EnvVars: []string{"TAILOR_ADDR"}, Value: httpserver.AddrDefault, Usage: "listen address"},
			&cli.StringSliceFlag{Name: "api-key-hash", EnvVars: []string{"TAILOR_API_KEY_HASHES"}, Usage: "SHA-256 (hex) of an accepted ingestion API key; repeat or comma-separate (without one, /v1/events is off)"},
			&cli.IntFlag{Name: "shards", Value: shardsDefault, Usage: "shard count when the event stream must be created"},
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
			if len(hashes) > 0 {
				keys, err := httpapi.NewStaticKeys(hashes)
				if err != nil {
					return usagef("--api-key-hash: %v", err)
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
			} else {
				slog.Warn("no --api-key-hash: POST /v1/events is off (create a key with 'tailor apikey new')")
			}
			purge, err := preferenceRoutes(c, b, mux)
			if err != nil {
				return err
			}
			defer purge.Wait()
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

func apikeyCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "apikey",
		Usage: "create API keys for the ingestion API",
		Subcommands: []*cli.Command{{
			Name:  "new",
			Usage: "print a new random API key and the hash to give 'tailor serve --api-key-hash'",
			Description: `The key goes to the app that sends events (Authorization: Bearer KEY); only its hash
goes to the server's configuration, so a leaked server config leaks no key.`,
			Action: func(c *cli.Context) error {
				raw := make([]byte, 24)
				if _, err := rand.Read(raw); err != nil {
					return err
				}
				key := "tlr_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw))
				fmt.Fprintf(c.App.Writer, "key:  %s\nhash: %s\n", key, httpapi.HashKey(key))
				return nil
			},
		}},
	})
}
