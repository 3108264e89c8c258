package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/profile"
)

// seedProfiles writes n reachable profiles straight to the table (BatchWriteItem).
func seedProfiles(t testing.TB, e *cliEnv, prefix string, n int) {
	seedProfilesFunc(t, e, n, func(i int) *profile.Profile {
		return &profile.Profile{ID: fmt.Sprintf("%s%05d", prefix, i), CRM: profile.CRM{Email: fmt.Sprintf("%s%d@example.com", prefix, i), FirstName: "F"}}
	})
}

// seedProfilesFunc writes the n profiles build returns straight to the table.
func seedProfilesFunc(t testing.TB, e *cliEnv, n int, build func(i int) *profile.Profile) {
	t.Helper()
	store := profile.NewStore(e.env.DynamoDB, e.env.Names.Profiles)
	require.NoError(t, store.EnsureTable(context.Background()))
	var reqs []types.WriteRequest
	for i := range n {
		item, err := profile.Encode(build(i))
		require.NoError(t, err)
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for chunk := range slices.Chunk(reqs, 25) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			in := map[string][]types.WriteRequest{store.Table(): chunk}
			for len(in) > 0 {
				out, err := e.env.DynamoDB.BatchWriteItem(context.Background(), &dynamodb.BatchWriteItemInput{RequestItems: in})
				if err != nil {
					t.Error(err)
					return
				}
				in = out.UnprocessedItems
			}
		})
	}
	wg.Wait()
}

func createdID(t testing.TB, out string) string {
	m := regexp.MustCompile(`campaign (\d+) created`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	return m[1]
}

// Bad input: a clear message, exit 2, nothing written. Unknown campaigns: exit 1.
func TestCLI_CampaignBadInputWritesNothing(t *testing.T) {
	e := newCLIEnv(t)
	welcome := "../../templates/examples/welcome"
	future := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--segment", "contry == 'FR'"}, `did you mean "country"`},
		{[]string{"--template", "nosuch@3"}, "no published template"},
		{[]string{"--template", "welcome@x"}, "must be a positive number"},
		{[]string{"--send-at", future}, "is in the past"},
		{[]string{"--send-at", "tomorrow"}, "want RFC 3339"},
		{[]string{"--send-at", "local:25:00"}, "want local:HH:MM"},
		{[]string{"--timezone", "Mars/Olympus"}, "want an IANA name"},
		{[]string{"--quiet-hours", "21-08"}, "want HH:MM-HH:MM"},
		{[]string{"--max-per-customer", "two/day"}, "want N/DURATION"},
		{[]string{"--max-per-customer", "2/0h"}, "want N/DURATION"},
		{[]string{"--trigger", `event.type == "add_to_cart"`, "--send-at", "now"}, "--trigger and --send-at exclude each other"},
		{[]string{"--trigger", `event.tpye == 1`}, "--trigger"},
		{[]string{"--delay", "1h"}, "need --trigger"},
		{[]string{"--topic", "nosuch"}, "not in the topics catalogue"},
	} {
		args := []string{"campaign", "create", "--template", welcome, "--segment", "true"}
		args = append(args, tc.args...)
		code, out := e.run(context.Background(), args...)
		require.Equal(t, exitUsage, code, "%v\n%s", tc.args, out)
		require.Contains(t, out, tc.want, "%v", tc.args)
	}
	var n int
	require.NoError(t, e.env.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM campaigns) + (SELECT count(*) FROM river_job)`).Scan(&n))
	require.Zero(t, n, "nothing written")

	for _, args := range [][]string{{"messages", "list", "--campaign", "99"}, {"campaign", "show", "99"}, {"campaign", "status", "99"}, {"campaign", "cancel", "99"}} {
		code, out := e.run(context.Background(), args...)
		require.Equal(t, exitFailure, code, "%v: %s", args, out)
		require.Contains(t, out, "campaign 99 not found", "%v", args)
	}
	id := createdID(t, e.ok("campaign", "create", "--template", welcome, "--segment", "true"))
	require.Contains(t, e.ok("campaign", "show", id), "status    draft")
	code, out := e.run(context.Background(), "campaign", "resume", id)
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "is draft: cannot resume it (resume applies to paused campaigns)")
	code, out = e.run(context.Background(), "campaign", "schedule", "--send-at", "soon", id)
	require.Equal(t, exitUsage, code, out)
	require.Contains(t, e.ok("campaign", "schedule", "--send-at", "+2h", id), "scheduled")
	require.Contains(t, e.ok("campaign", "cancel", id), "cancelled")
}

// kill -9 of a real `tailor work` process in the middle of a campaign, then a new one: the
// campaign completes within 60 s of the restart with exactly one row per recipient.
func TestCLI_CampaignSurvivesKillOfWork(t *testing.T) {
	e := newCLIEnv(t)
	const n = 5000
	seedProfiles(t, e, "k", n)
	bin := filepath.Join(t.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	tpl := t.TempDir()
	for name, body := range map[string]string{"template.yaml": "name: kill\nversion: 1\n", "subject": "Hi {{ customer.first_name }}",
		"html": "<p>" + strings.Repeat("{{ customer.customer_id }} ", 200) + "</p>", "text": "Hi"} {
		require.NoError(t, os.WriteFile(filepath.Join(tpl, name), []byte(body), 0o644))
	}
	work := func() *exec.Cmd {
		cmd := exec.Command(bin, append(e.args[1:], "--log-level", "warn", "work", "--batch-size", "50")...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("tailor work:\n%s", buf.String())
			}
		})
		return cmd
	}
	first := work()
	id := createdID(t, e.ok("campaign", "create", "--template", tpl, "--segment", "true", "--send-at", "now"))
	progress := func() (processed, audience int, status string) {
		require.NoError(t, e.env.Pool.QueryRow(context.Background(), `SELECT processed, audience_count, status FROM campaigns WHERE id = $1`, id).Scan(&processed, &audience, &status))
		return
	}
	deadline := time.Now().Add(2 * time.Minute)
	for p, _, _ := progress(); p < 500; p, _, _ = progress() {
		require.True(t, time.Now().Before(deadline), "no progress")
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	p, _, status := progress()
	require.Less(t, p, n, "killed mid-campaign")
	require.Equal(t, "running", status)

	restarted := time.Now()
	work()
	for _, _, status = progress(); status != "rendered"; _, _, status = progress() {
		require.Less(t, time.Since(restarted), 60*time.Second, "campaign not complete within 60s of the restart")
		time.Sleep(100 * time.Millisecond)
	}
	var rows, distinct, rendered int
	require.NoError(t, e.env.Pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT customer_id), count(*) FILTER (WHERE status = 'rendered')
		FROM rendered_messages WHERE campaign_id = $1`, id).Scan(&rows, &distinct, &rendered))
	require.Equal(t, n, rows, "no gap")
	require.Equal(t, n, distinct, "no duplicate")
	require.Equal(t, n, rendered)
	p, a, _ := progress()
	require.Equal(t, n, p)
	require.Equal(t, n, a)
	t.Logf("complete %s after the restart", time.Since(restarted).Round(time.Second))
}

// status --watch draws a progress bar on a terminal and prints plain lines otherwise.
func TestCLI_CampaignStatusWatch(t *testing.T) {
	e := newCLIEnv(t)
	seedProfiles(t, e, "w", 300)
	id := createdID(t, e.ok("campaign", "create", "--template", "../../templates/examples/welcome", "--segment", "true", "--send-at", "now"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workDone := make(chan int, 1)
	t.Setenv("TAILOR_CONTENT_URL", "http://127.0.0.1:1") // content falls back at once
	go func() { code, _ := e.run(ctx, "work"); workDone <- code }()

	plain := e.ok("campaign", "status", "--watch", "--interval", "100ms", id)
	require.NotContains(t, plain, "\r", "no terminal: plain lines")
	require.Regexp(t, `(?m)^campaign `+id+` rendered: audience 300, rendered 300, skipped 0, failed 0, fallbacks offer 300, recs 300`, plain)

	// In a pseudo-terminal: a bar redrawn in place.
	master, slave := openPTY(t)
	bin := filepath.Join(t.TempDir(), "tailor")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	cmd := exec.Command(bin, append(e.args[1:], "campaign", "status", "--watch", id)...)
	cmd.Stdout, cmd.Stderr = slave, slave
	require.NoError(t, cmd.Start())
	require.NoError(t, cmd.Wait())
	slave.Close()
	var screen bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := master.Read(buf)
		screen.Write(buf[:n])
		if err != nil {
			break
		}
	}
	require.Contains(t, screen.String(), "\r\x1b[K[████████████████████████] 100% campaign "+id+" rendered")
	cancel()
	require.Equal(t, exitOK, <-workDone)
	require.Contains(t, e.ok("campaign", "report", id), "recs         fallback 300")
}

// openPTY opens a pseudo-terminal pair (Linux /dev/ptmx).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	var unlock int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock)))
	require.Zero(t, errno)
	var n uint32
	_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n)))
	require.Zero(t, errno)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}
