package main

import (
	"context"
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSMTPSink_CountsRefusesAndSaves(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"smtp-sink", "--addr", "0.0.0.0:2525"}, "loopback only"},
		{[]string{"smtp-sink", "--addr", ":2525"}, "loopback only"},
		{[]string{"smtp-sink", "--answer", "250=@x.example"}, "want 400 to 599"},
		{[]string{"smtp-sink", "--answer", "550=@x.example:later"}, `unknown option "later"`},
	} {
		code, out := runCLI(t, tc.args...)
		require.Equal(t, exitUsage, code, out)
		require.Contains(t, out, tc.want)
	}

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"tailor", "smtp-sink", "--addr", "127.0.0.1:0", "--answer", "550=@bounce.example", "--save", dir, "--every", "0"}, out, out)
	}()
	var addr string
	waitFor(t, 30*time.Second, func() error {
		if m := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`).FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			return nil
		}
		return os.ErrNotExist
	})
	msg := []byte("Subject: hi\r\n\r\nhello\r\n")
	require.NoError(t, smtp.SendMail(addr, nil, "news@shop.example", []string{"zoe@example.com"}, msg))
	require.ErrorContains(t, smtp.SendMail(addr, nil, "news@shop.example", []string{"gone@bounce.example"}, msg), "550")
	cancel()
	require.Equal(t, exitOK, <-done, out.String())
	require.Contains(t, out.String(), fmt.Sprintf("smtp sink: 1 accepted (%d bytes), 0 refused 4xx, 1 refused 5xx, 2 connections", len(msg)))
	saved, err := os.ReadFile(filepath.Join(dir, "00000001.eml"))
	require.NoError(t, err)
	require.Equal(t, string(msg), string(saved))
}
