package main

import (
	"context"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/backends"
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

func serveCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "serve",
		Usage: "run the HTTP server: /healthz, /readyz, Prometheus /metrics",
		Description: `Listens on --addr (loopback by default: put a proxy in front, or set --addr to expose it).
/healthz answers while the process runs; /readyz asks Postgres and DynamoDB and answers
503 naming the backend that does not answer; /metrics serves Prometheus metrics.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", EnvVars: []string{"TAILOR_ADDR"}, Value: httpserver.AddrDefault, Usage: "listen address"},
		},
		Action: func(c *cli.Context) error {
			b, err := openBackends(c)
			if err != nil {
				return err
			}
			defer b.Close()
			srv, err := httpserver.Start(httpserver.Config{Addr: c.String("addr"), Checks: readinessChecks(b), Mux: http.NewServeMux()})
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
