package httpserver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults for Config.
const (
	AddrDefault              = "127.0.0.1:8080"
	ReadHeaderTimeoutDefault = 5 * time.Second
	ShutdownTimeoutDefault   = 15 * time.Second
)

// Check is one readiness probe: it returns nil when its backend answers.
type Check struct {
	Name string
	Fn   func(context.Context) error
}

// Config describes the server. Zero values mean defaults.
type Config struct {
	Addr     string         // listen address; default 127.0.0.1:8080 (loopback: expose it on purpose)
	Checks   []Check        // readiness probes
	Mux      *http.ServeMux // extra routes; may be nil
	Registry *prometheus.Registry
	Logger   *slog.Logger
}

// Server is a started HTTP server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// NewRegistry returns a Prometheus registry with Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Start listens on cfg.Addr and serves until Stop.
func Start(cfg Config) (*Server, error) {
	cfg.Addr = cmp.Or(cfg.Addr, AddrDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = NewRegistry()
	}
	mux := http.NewServeMux()
	if cfg.Mux != nil {
		mux.Handle("/", cfg.Mux)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		status, code := map[string]string{}, http.StatusOK
		for _, c := range cfg.Checks {
			if err := c.Fn(ctx); err != nil {
				status[c.Name], code = err.Error(), http.StatusServiceUnavailable
			} else {
				status[c.Name] = "ok"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(status)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler: mux, ReadHeaderTimeout: ReadHeaderTimeoutDefault,
			ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: 64 << 10,
			ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		},
		ln: ln, done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	cfg.Logger.Info("http server listening", "addr", ln.Addr().String())
	return s, nil
}

// Addr returns the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop shuts down gracefully: no new connections, in-flight requests finish until ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serveErr := <-s.done; serveErr != nil && err == nil {
		err = serveErr
	}
	return err
}
