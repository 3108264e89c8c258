package localstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tailor-email/tailor/internal/ctxtime"
)

// procSpec describes one child process of the stack.
type procSpec struct {
	name    string // for messages
	path    string
	args    []string
	env     []string // added to the environment
	dir     string   // working directory (must be reachable by cred's user)
	logPath string
	cred    *syscall.Credential
	// stopSig asks the process to stop gracefully; deathSig is what an attached process gets when
	// its parent dies.
	stopSig, deathSig syscall.Signal
	detached          bool
}

type proc struct {
	spec procSpec
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // Wait's result, set before done is closed
}

func startProc(spec procSpec) (*proc, error) {
	logf, err := os.OpenFile(spec.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("localstack: open log for %s: %w", spec.name, err)
	}
	defer logf.Close() // the child holds its own copy of the descriptor
	cmd := exec.Command(spec.path, spec.args...)
	cmd.Env = append(os.Environ(), spec.env...)
	cmd.Dir = spec.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	attr := &syscall.SysProcAttr{Credential: spec.cred}
	if spec.detached {
		attr.Setsid = true // its own session and process group: it survives our exit
	} else {
		// Its own process group, so a stop reaches its children, and a signal when we die (Go
		// sets the parent-death signal after dropping privileges, so it holds for postgres too).
		attr.Setpgid = true
		attr.Pdeathsig = spec.deathSig
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("localstack: start %s: %w", spec.name, err)
	}
	p := &proc{spec: spec, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports an error naming the log when the process has already died.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("localstack: %s exited early (%v); see %s", p.spec.name, p.err, p.spec.logPath)
	default:
		return nil
	}
}

// stop signals the process group gracefully, then kills it after a grace period.
func (p *proc) stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.pid(), p.spec.stopSig)
	grace := time.NewTimer(15 * time.Second)
	defer grace.Stop()
	select {
	case <-p.done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
	return nil
}

// stopPID stops a process that an earlier command started (a detached stack). It first checks
// that pid still runs a program whose command line contains want, so a reused PID is left alone.
func stopPID(ctx context.Context, pid int, want string, group bool, sig syscall.Signal) error {
	if !pidRuns(pid, want) {
		return nil
	}
	target := pid
	if group {
		target = -pid
	}
	if err := syscall.Kill(target, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("localstack: signal %s (pid %d): %w", want, pid, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for pidRuns(pid, want) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = syscall.Kill(target, syscall.SIGKILL)
			deadline = time.Now().Add(5 * time.Second)
		}
		if err := ctxtime.Sleep(context.WithoutCancel(ctx), 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// pidRuns reports whether pid is a live (not zombie) process whose command line contains want.
func pidRuns(pid int, want string) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "123 (node) S ...".
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return strings.Contains(string(cmdline), want)
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("localstack: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls check with backoff until it succeeds, the process dies or ctx ends.
func waitReady(ctx context.Context, p *proc, what string, check func(context.Context) error) error {
	delay := 50 * time.Millisecond
	var last error
	for {
		if p != nil {
			if err := p.exited(); err != nil {
				return err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if err := ctxtime.Sleep(ctx, delay); err != nil {
			return fmt.Errorf("localstack: %s not ready: %w (last error: %v)", what, err, last)
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}
