package cdc_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/testenv"
)

// buildTailor builds cmd/tailor into a temporary directory and returns the binary's path.
func buildTailor(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tailor-email/tailor/cmd/tailor").CombinedOutput()
	require.NoError(tb, err, "go build: %s", out)
	return bin
}

func (f *fixture) execTB(tb testing.TB, sql string, args ...any) {
	tb.Helper()
	_, err := f.env.Pool.Exec(context.Background(), sql, args...)
	require.NoError(tb, err, sql)
}

// createSlotWithoutBackfill creates the publication and the slot and records the slot's backfill
// as done, so that a CDC process streams what follows and nothing else.
func (f *fixture) createSlotWithoutBackfill(tb testing.TB) {
	tb.Helper()
	f.execTB(tb, "CREATE PUBLICATION "+f.cfg.Publication+" FOR TABLE customers, subscriptions, consents")
	f.execTB(tb, `INSERT INTO cdc_slots (slot_name, consistent_lsn, backfilled_rows)
		SELECT slot_name, lsn, 0 FROM pg_create_logical_replication_slot($1, 'pgoutput')`, f.cfg.Slot)
}

// dropProfilesAtCleanup deletes the profiles table when the test ends: big tables would
// otherwise stay in the emulator's memory until the stack stops.
func (f *fixture) dropProfilesAtCleanup(tb testing.TB) {
	tb.Cleanup(func() {
		_, _ = f.env.DynamoDB.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(f.store.Table())})
	})
}

// tailorProc is a running `tailor cdc` process.
type tailorProc struct {
	cmd     *exec.Cmd
	addr    string // its metrics address
	started time.Time
	done    chan struct{} // closed when it exited
	err     error         // its exit status, once done is closed
	out     *bytes.Buffer
}

// startTailorCDC runs `tailor cdc` for the fixture's database and prefix, with its metrics on a
// free local port. The process is killed when the test ends.
func (f *fixture) startTailorCDC(tb testing.TB, bin string, flags ...string) *tailorProc {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	addr := l.Addr().String()
	require.NoError(tb, l.Close())
	args := []string{"--dir", testenv.Stack(tb).Dir, "--database-url", f.env.DatabaseURL, "--prefix", f.env.Names.Prefix,
		"--log-level", "warn", "cdc", "--metrics-addr", addr}
	p := &tailorProc{cmd: exec.Command(bin, append(args, flags...)...), addr: addr, done: make(chan struct{}), out: &bytes.Buffer{}}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	require.NoError(tb, p.cmd.Start())
	p.started = time.Now()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if tb.Failed() {
			tb.Logf("tailor cdc output:\n%s", p.out.String())
		}
	})
	return p
}

// rowsApplied reads tailor_cdc_rows_applied_total from the process's metrics.
func (p *tailorProc) rowsApplied() (float64, error) {
	select {
	case <-p.done:
		return 0, fmt.Errorf("tailor cdc exited: %v", p.err)
	default:
	}
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "tailor_cdc_rows_applied_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no tailor_cdc_rows_applied_total in /metrics")
}

// peakRSS returns the process's peak resident set size in bytes (VmHWM).
func (p *tailorProc) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/<pid>/status")
}

// stop ends the process with SIGTERM and waits for it.
func (p *tailorProc) stop(tb testing.TB) {
	tb.Helper()
	require.NoError(tb, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		tb.Fatal("tailor cdc did not stop within a minute of SIGTERM")
	}
}
