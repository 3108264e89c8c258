package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/urfave/cli/v2"

	"github.com/tailor-email/tailor/internal/httpserver"
	"github.com/tailor-email/tailor/templates/contentdemo"
)

// contentAddrDefault is where the example templates look for the demo content service.
const contentAddrDefault = "127.0.0.1:8089"

func contentCommand() *cli.Command {
	return withUsageErrors(&cli.Command{
		Name:  "content",
		Usage: "the demo content service that templates' content sources call",
		Subcommands: []*cli.Command{{
			Name:  "serve",
			Usage: "serve demo recommendations and a daily offer over HTTP until interrupted",
			Description: `GET /recommendations?customer=ID&categories=a,b and GET /offer answer JSON from a small
catalog. --latency, --jitter and --error-rate make it slow or failing, to watch timeouts,
caching, fallbacks and the circuit breaker work. Listens on loopback by default; the example
templates call ${TAILOR_CONTENT_URL:-http://127.0.0.1:8089}, so with another --addr run
   export TAILOR_CONTENT_URL=http://ADDR`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "addr", Value: contentAddrDefault, Usage: "listen address (port 0 picks a free port)"},
				&cli.StringFlag{Name: "catalog", Usage: "JSON array of products ({name, url, price_minor, currency, category}) instead of the built-in one"},
				&cli.DurationFlag{Name: "latency", Usage: "delay before every answer"},
				&cli.DurationFlag{Name: "jitter", Usage: "extra random delay, up to this much"},
				&cli.Float64Flag{Name: "error-rate", Usage: "fraction of requests (0 to 1) answered with HTTP 500"},
			},
			Action: contentServe,
		}},
	})
}

func contentServe(c *cli.Context) error {
	cfg := contentdemo.Config{Latency: c.Duration("latency"), Jitter: c.Duration("jitter"), ErrorRate: c.Float64("error-rate")}
	if path := c.String("catalog"); path != "" {
		items, err := contentdemo.LoadCatalog(path)
		if err != nil {
			return usageError{fmt.Errorf("--catalog: %w", err)}
		}
		cfg.Catalog = items
	}
	h, err := contentdemo.NewHandler(cfg)
	if err != nil {
		return usageError{err}
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	srv, err := httpserver.Start(httpserver.Config{Addr: c.String("addr"), Mux: mux})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "content service on http://%s (GET /recommendations, /offer); stop with Ctrl-C\n", srv.Addr())
	if srv.Addr() != contentAddrDefault {
		fmt.Fprintf(c.App.Writer, "point templates at it: export TAILOR_CONTENT_URL=http://%s\n", srv.Addr())
	}
	<-c.Context.Done()
	ctx, cancel := context.WithTimeout(context.Background(), httpserver.ShutdownTimeoutDefault)
	defer cancel()
	return srv.Stop(ctx)
}
