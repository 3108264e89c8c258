package localstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// EmulatorSES is the Amazon SES v2 emulator: npm aws-ses-v2-local@2.10.2. It takes SendEmail
// (simple and raw MIME content) through the real sesv2 client and keeps what it got, parsed, at
// GET /store. It is not part of the stack: tests of the SES sender start one (StartSES).
const EmulatorSES = "aws-ses-v2-local"

// SES is a running SES emulator.
type SES struct {
	// URL is its endpoint (http://127.0.0.1:PORT), the sesv2 client's BaseEndpoint.
	URL string
	p   *proc
}

// StartSES starts an SES emulator on a free loopback port, logging to logDir, and waits until
// it answers. Stop it with Stop.
func StartSES(ctx context.Context, logDir string) (*SES, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("localstack: node not found: install Node.js 20+ (Debian: apt-get install nodejs npm)")
	}
	dir, err := EmulatorDir(ctx, func(string, ...any) {})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p, err := startProc(procSpec{
		name: EmulatorSES, path: node, dir: dir,
		args: []string{"-r", filepath.Join(dir, "loopback.js"), filepath.Join(dir, "node_modules", "aws-ses-v2-local", "dist", "cli.js"),
			"--host", "127.0.0.1", "--port", strconv.Itoa(port)},
		logPath: filepath.Join(logDir, EmulatorSES+".log"),
		stopSig: syscall.SIGTERM, deathSig: syscall.SIGKILL,
	})
	if err != nil {
		return nil, err
	}
	s := &SES{URL: "http://127.0.0.1:" + strconv.Itoa(port), p: p}
	if err := waitReady(ctx, p, EmulatorSES, s.check); err != nil {
		_ = p.stop(context.Background())
		return nil, err
	}
	return s, nil
}

func (s *SES) check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health-check", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: health check: %s", EmulatorSES, resp.Status)
	}
	return nil
}

// Stop stops the emulator (what it stored goes with it).
func (s *SES) Stop(ctx context.Context) error { return s.p.stop(ctx) }
