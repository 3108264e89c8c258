package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/app"
	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/pipeline/profile"
	"github.com/tailor-email/tailor/preferences"
	"github.com/tailor-email/tailor/preferences/web"
)

// Flags of the preference links, shared by serve (which verifies them) and work (which mints
// them into rendered messages).
func linkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "public-url", EnvVars: []string{"TAILOR_PUBLIC_URL"}, Usage: "where recipients reach 'tailor serve', e.g. https://prefs.example.com: messages link to PUBLIC_URL/preferences/TOKEN and PUBLIC_URL/unsubscribe/TOKEN"},
		&cli.StringSliceFlag{Name: "token-key", EnvVars: []string{"TAILOR_TOKEN_KEYS"}, Usage: "ID=SECRET (base64, 32+ bytes; 'tailor webhook secret' makes one) signing preference links; the first signs, all verify: put a new key first to rotate"},
		&cli.DurationFlag{Name: "token-ttl", EnvVars: []string{"TAILOR_TOKEN_TTL"}, Value: preferences.TokenTTLDefault, Usage: "how long a link in a message works"},
	}
}

func tokenKeys(c *cli.Context) ([]preferences.TokenKey, error) {
	var keys []preferences.TokenKey
	for _, s := range c.StringSlice("token-key") {
		k, err := preferences.ParseTokenKey(s)
		if err != nil {
			return nil, usagef("--token-key: %v", err)
		}
		keys = append(keys, k)
	}
	if c.Duration("token-ttl") <= 0 {
		return nil, usagef("--token-ttl %s: want a positive duration, e.g. 2160h", c.Duration("token-ttl"))
	}
	return keys, nil
}

// links builds jobs.Config.Links from the flags (nil without --public-url and --token-key).
func links(c *cli.Context) (func(int64, string, string) (string, string), error) {
	keys, err := tokenKeys(c)
	if err != nil {
		return nil, err
	}
	l, err := app.PreferenceLinks(c.String("public-url"), keys, c.Duration("token-ttl"))
	if err != nil {
		return nil, usagef("--public-url / --token-key: %v", err)
	}
	return l, nil
}

// servePreferenceFlags are serve's preference-center flags.
func servePreferenceFlags() []cli.Flag {
	return append(linkFlags(),
		&cli.StringSliceFlag{Name: "webhook-secret", EnvVars: []string{"TAILOR_WEBHOOK_SECRETS"}, Usage: "Standard Webhooks secret (whsec_...) of POST /v1/webhooks/preferences; repeat or comma-separate to rotate (without one the webhook is off)"},
		&cli.BoolFlag{Name: "webhook-create-customers", EnvVars: []string{"TAILOR_WEBHOOK_CREATE_CUSTOMERS"}, Usage: "create the customer when a webhook names an unknown one by customer_id and email (default: 404)"},
	)
}

// preferenceRoutes mounts the preference center's routes on mux as the flags ask: the webhook
// with --webhook-secret, the page and one-click unsubscribe with --token-key. With the webhook
// it also purges expired delivery records hourly until the command's context ends; the
// returned WaitGroup waits for that.
func preferenceRoutes(c *cli.Context, b *backends.Backends, mux *http.ServeMux) (*sync.WaitGroup, error) {
	var wg sync.WaitGroup
	keys, err := tokenKeys(c)
	if err != nil {
		return nil, err
	}
	secrets := c.StringSlice("webhook-secret")
	if len(keys) == 0 && len(secrets) == 0 {
		slog.Warn("no --webhook-secret and no --token-key: the preference center is off (see 'tailor serve --help')")
		return &wg, nil
	}
	store, h, err := app.Preferences(b, app.PreferenceOptions{
		WebhookSecrets: secrets, TokenKeys: keys, TokenTTL: c.Duration("token-ttl"), PublicURL: c.String("public-url"),
		CreateCustomers: c.Bool("webhook-create-customers"), Logger: slog.Default(),
	})
	if err != nil {
		return nil, usagef("preference center: %v", err)
	}
	h.Register(mux)
	if len(secrets) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			store.PurgeDeliveriesEvery(c.Context, time.Hour, func(err error) { slog.Warn("purge webhook deliveries", "err", err) })
		}()
	}
	if len(keys) == 0 {
		slog.Warn("no --token-key: the preference page and one-click unsubscribe are off")
	}
	if len(secrets) == 0 {
		slog.Warn("no --webhook-secret: POST /v1/webhooks/preferences is off")
	}
	return &wg, nil
}

// withStore runs fn with the preference store over the backends the global flags name.
func withStore(c *cli.Context, fn func(*preferences.Store) error) error {
	b, err := openBackends(c)
	if err != nil {
		return err
	}
	defer b.Close()
	store, err := preferences.NewStore(preferences.Config{DB: b.Pool})
	if err != nil {
		return err
	}
	return fn(store)
}

func topicCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "topic",
		Usage: "manage the topics catalogue recipients subscribe to and campaigns name",
		Subcommands: []*cli.Command{{
			Name:      "create",
			Usage:     "add a topic to the catalogue",
			ArgsUsage: "NAME",
			Description: `NAME is 1 to 64 lower-case letters, digits, _ or -. An opt-in topic (--default
unsubscribed, the default) reaches only customers who subscribed; an opt-out topic (--default
subscribed) reaches everyone who did not unsubscribe. The preference page lists active topics.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "description", Usage: "what recipients get (shown on the preference page; at most 500 bytes)"},
				&cli.StringFlag{Name: "default", Value: profile.StatusUnsubscribed, Usage: "status of customers without a choice: unsubscribed (opt-in) or subscribed (opt-out)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usagef("topic create: want one NAME, after the flags (tailor topic create --description TEXT NAME)")
				}
				return withStore(c, func(store *preferences.Store) error {
					t, err := store.CreateTopic(c.Context, preferences.NewTopic{Name: c.Args().First(), Description: c.String("description"), DefaultStatus: c.String("default")})
					if errors.Is(err, preferences.ErrInvalidChange) || errors.Is(err, preferences.ErrTopicExists) {
						return usageError{err}
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "topic %s created (default %s)\n", t.Name, t.DefaultStatus)
					return nil
				})
			},
		}, {
			Name:  "list",
			Usage: "list the topics catalogue",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "all", Usage: "include archived topics"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			},
			Action: func(c *cli.Context) error {
				var ts []preferences.Topic
				err := withStore(c, func(store *preferences.Store) (err error) {
					ts, err = store.Topics(c.Context, c.Bool("all"))
					return err
				})
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, ts)
				}
				w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tDEFAULT\tCREATED\tARCHIVED\tDESCRIPTION")
				for _, t := range ts {
					archived := "-"
					if t.ArchivedAt != nil {
						archived = t.ArchivedAt.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.DefaultStatus, t.CreatedAt.UTC().Format(time.RFC3339), archived, t.Description)
				}
				return w.Flush()
			},
		}, {
			Name:      "archive",
			Usage:     "archive a topic: the page stops listing it and no new send may use it",
			ArgsUsage: "NAME",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usagef("topic archive: want one NAME")
				}
				return withStore(c, func(store *preferences.Store) error {
					t, err := store.ArchiveTopic(c.Context, c.Args().First())
					if errors.Is(err, preferences.ErrUnknownTopic) {
						return usageError{err}
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "topic %s archived at %s\n", t.Name, t.ArchivedAt.UTC().Format(time.RFC3339))
					return nil
				})
			},
		}},
	})
}

func webhookCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "webhook",
		Usage: "help preference centers integrate: sign test webhooks, make secrets, print the schema",
		Subcommands: []*cli.Command{{
			Name:      "sign",
			Usage:     "print the Standard Webhooks headers for a body, to test an integration",
			ArgsUsage: "FILE|-",
			Description: `Prints webhook-id, webhook-timestamp and webhook-signature (v1, HMAC-SHA256 of
id.timestamp.body) for the body in FILE, e.g.

   tailor webhook sign --secret "$SECRET" change.json
   curl -H @<(tailor webhook sign --secret "$SECRET" change.json) \
        -H 'Content-Type: application/json' --data-binary @change.json \
        http://127.0.0.1:8080/v1/webhooks/preferences`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "secret", Required: true, Usage: "the whsec_ secret 'tailor serve --webhook-secret' has"},
				&cli.StringFlag{Name: "id", Usage: "webhook-id (default: a new random msg_ id; reuse one to test idempotency)"},
				&cli.Int64Flag{Name: "timestamp", Usage: "webhook-timestamp in Unix seconds (default: now)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usagef("webhook sign: want one FILE (or - for standard input)")
				}
				if err := web.CheckSecret(c.String("secret")); err != nil {
					return usagef("--secret: %v", err)
				}
				body, err := readInput(c, c.Args().First())
				if err != nil {
					return err
				}
				id := c.String("id")
				if id == "" {
					id = web.NewDeliveryID()
				}
				at := time.Now()
				if ts := c.Int64("timestamp"); ts != 0 {
					at = time.Unix(ts, 0)
				}
				h, err := web.Sign(c.String("secret"), id, at, body)
				if err != nil {
					return usagef("--secret: %v", err)
				}
				for _, k := range []string{web.HeaderID, web.HeaderTimestamp, web.HeaderSignature} {
					fmt.Fprintf(c.App.Writer, "%s: %s\n", k, h.Get(k))
				}
				return nil
			},
		}, {
			Name:  "secret",
			Usage: "print a new random secret (whsec_...) for --webhook-secret or, as ID=SECRET, --token-key",
			Action: func(c *cli.Context) error {
				s, err := web.NewSecret()
				if err != nil {
					return err
				}
				fmt.Fprintln(c.App.Writer, s)
				return nil
			},
		}, {
			Name:  "schema",
			Usage: "print the JSON Schema of the change set POST /v1/webhooks/preferences takes",
			Action: func(c *cli.Context) error {
				_, err := c.App.Writer.Write(preferences.ChangeSetSchema)
				return err
			},
		}},
	})
}

func readInput(c *cli.Context, name string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if c.App.Reader != nil {
		r = c.App.Reader
	}
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, usagef("%v", err)
		}
		defer f.Close()
		r = f
	}
	return io.ReadAll(io.LimitReader(r, preferences.MaxChangeSetBytes+1))
}

func customerCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "customer",
		Usage: "GDPR: export or erase everything held about a customer",
		Subcommands: []*cli.Command{{
			Name:      "export",
			Usage:     "print everything held about a customer as JSON",
			ArgsUsage: "ID|EMAIL",
			Description: `Prints the customers row, subscriptions, consents, suppressions, the preference audit
log, webhook deliveries, rendered messages, dead letters that mention the customer and the
DynamoDB profile. An EMAIL covers every customer with that address.`,
			Action: func(c *cli.Context) error {
				return customerAction(c, "export", func(ctx context.Context, store *preferences.Store, profiles *profile.Store, ref string) error {
					out, err := store.Export(ctx, profiles, ref)
					if err != nil {
						return err
					}
					return printJSON(c.App.Writer, out)
				})
			},
		}, {
			Name:      "forget",
			Usage:     "erase a customer's personal data everywhere (GDPR erasure)",
			ArgsUsage: "ID|EMAIL",
			Description: `Erases the DynamoDB profile (events still in the stream are not aggregated into it
again) and, in one transaction, the customers row with its subscriptions and consents,
rendered messages, preference audit rows, webhook delivery records and dead letters that
mention the id or address. A suppressed address (unsubscribed, bounced, complained) is kept
only as its SHA-256, so it stays suppressed. One audit row without personal data records the
erasure. An EMAIL covers every customer with that address. Running it again is harmless.`,
			Action: func(c *cli.Context) error {
				return customerAction(c, "forget", func(ctx context.Context, store *preferences.Store, profiles *profile.Store, ref string) error {
					out, err := store.Forget(ctx, profiles, ref)
					if err != nil {
						return err
					}
					var total int64
					for _, n := range out.Deleted {
						total += n
					}
					fmt.Fprintf(c.App.Writer, "forgot %d customer(s): %d profile(s) erased, %d rows deleted, %d suppression(s) kept as a hash; audit row %d\n",
						len(out.Customers), len(out.Customers), total, out.KeptSuppressions, out.AuditID)
					return nil
				})
			},
		}},
	})
}

func customerAction(c *cli.Context, name string, fn func(context.Context, *preferences.Store, *profile.Store, string) error) error {
	if c.NArg() != 1 || c.Args().First() == "" {
		return usagef("customer %s: want one customer ID or EMAIL", name)
	}
	b, err := openBackends(c)
	if err != nil {
		return err
	}
	defer b.Close()
	profiles, err := app.Profiles(c.Context, b)
	if err != nil {
		return err
	}
	store, err := preferences.NewStore(preferences.Config{DB: b.Pool})
	if err != nil {
		return err
	}
	err = fn(c.Context, store, profiles, c.Args().First())
	if errors.Is(err, preferences.ErrUnknownCustomer) {
		return cli.Exit(fmt.Sprintf("customer %s: %v", name, err), exitFailure)
	}
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
