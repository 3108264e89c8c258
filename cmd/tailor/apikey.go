package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/apikeys"
	"github.com/tailor-email/tailor/internal/httpapi"
)

func apikeyCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "apikey",
		Usage: "create, list and revoke the API keys of 'tailor serve'",
		Description: `Keys live in Postgres as their SHA-256 only, each with scopes: events (POST /v1/events),
send (the sender API), webhooks, admin. 'tailor serve' refuses a revoked key within 2 s.`,
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "create a key and print it, once",
				Description: `Prints the key once: store it in the client's secret store now (the server keeps only its
hash). Example: tailor apikey create --name relay-1 --scopes send,events`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Required: true, Usage: "a name to tell keys apart (letters, digits, '.', '_', '-'; unique among active keys)"},
					&cli.StringSliceFlag{Name: "scopes", Required: true, Usage: "what the key may call: " + strings.Join(apikeys.Scopes, ", ") + " (comma-separated or repeated)"},
				},
				Action: func(c *cli.Context) error {
					scopes, err := apikeys.ParseScopes(c.StringSlice("scopes"))
					if err != nil {
						return usagef("--scopes: %v", err)
					}
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					k, err := apikeys.NewStore(b.Pool).Create(c.Context, c.String("name"), scopes)
					if errors.Is(err, apikeys.ErrInvalid) {
						return usagef("--name: %v", err)
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "key:    %s\nid:     %d\nname:   %s\nscopes: %s\n", k.Secret, k.ID, k.Name, strings.Join(k.Scopes, ","))
					fmt.Fprintln(c.App.ErrWriter, "Store the key now: it is not shown again (the server keeps only its hash).")
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list keys (never their secrets): active ones first",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "format", Value: "text", Usage: "text (a table) or json (NDJSON)"},
				},
				Action: func(c *cli.Context) error {
					format := c.String("format")
					if format != "text" && format != "json" {
						return usagef("--format %q: want text or json", format)
					}
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					keys, err := apikeys.NewStore(b.Pool).List(c.Context)
					if err != nil {
						return err
					}
					if format == "json" {
						enc := json.NewEncoder(c.App.Writer)
						for _, k := range keys {
							if err := enc.Encode(k); err != nil {
								return err
							}
						}
						return nil
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tSCOPES\tCREATED\tLAST USED\tREVOKED")
					for _, k := range keys {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, strings.Join(k.Scopes, ","),
							k.CreatedAt.UTC().Format(time.RFC3339), orDash(k.LastUsedAt), orDash(k.RevokedAt))
					}
					return tw.Flush()
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke a key by name or id; servers refuse it within 2 s",
				ArgsUsage: "NAME|ID",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("apikey revoke: want one key name or id, e.g. tailor apikey revoke relay-1")
					}
					b, err := openBackends(c)
					if err != nil {
						return err
					}
					defer b.Close()
					k, err := apikeys.NewStore(b.Pool).Revoke(c.Context, c.Args().First())
					if errors.Is(err, apikeys.ErrNotFound) {
						return fmt.Errorf("%w ('tailor apikey list' shows the keys)", err)
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "revoked key %d (%s, %s)\n", k.ID, k.Name, k.Prefix)
					return nil
				},
			},
			{
				Name:  "new",
				Usage: "print a random bootstrap key and the hash to give 'tailor serve --api-key-hash' (stores nothing)",
				Description: `A bootstrap key grants every scope and lives only in the server's configuration, as its
hash, so a leaked server config leaks no key. It is for a first start, before any key is in
Postgres: prefer 'tailor apikey create', whose keys have scopes and can be revoked.`,
				Action: func(c *cli.Context) error {
					key, err := apikeys.NewKey()
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "key:  %s\nhash: %s\n", key, httpapi.HashKey(key))
					return nil
				},
			},
		},
	})
}

func orDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
