package smtpsink_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, cfg smtpsink.Config) *smtpsink.Sink {
	t.Helper()
	s, err := smtpsink.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// send delivers one message with the standard library's client and returns the error of the
// step that failed (RCPT or DATA), as a *textproto.Error when the sink answered.
func send(t *testing.T, s *smtpsink.Sink, to string) error {
	t.Helper()
	c, err := smtp.Dial(s.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Mail("news@shop.example"))
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	require.NoError(t, err)
	_, err = fmt.Fprintf(w, "Subject: hi\r\nTo: <%s>\r\n\r\nhello\r\n", to)
	require.NoError(t, err)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func code(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 250
	}
	var te *textproto.Error
	require.True(t, errors.As(err, &te), "not an SMTP answer: %v", err)
	return te.Code
}

func TestStart_RefusesAddressesBeyondLoopback(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{":2525", "0.0.0.0:0", "[::]:0", "192.0.2.1:25", "example.com:25", "127.0.0.1"} {
		_, err := smtpsink.Start(smtpsink.Config{Addr: addr})
		require.ErrorIs(t, err, smtpsink.ErrNotLoopback, addr)
	}
	_, err := smtpsink.Start(smtpsink.Config{Addr: "0.0.0.0:0"})
	require.ErrorIs(t, err, smtpsink.ErrNotLoopback)
	require.ErrorContains(t, err, "loopback only")
	s := start(t, smtpsink.Config{Addr: "localhost:0"})
	require.Regexp(t, `^smtp://(127\.0\.0\.1|\[::1\]):\d+$`, s.URL())
}

func TestSink_AcceptsCountsAndKeepsMessages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, smtpsink.Config{Store: true, SaveDir: dir})
	require.NoError(t, send(t, s, "a@example.com"))
	require.NoError(t, send(t, s, "b@example.com"))
	st := s.Stats()
	require.Equal(t, int64(2), st.Accepted)
	require.Equal(t, int64(2), st.Connections)
	require.Positive(t, st.Bytes)
	msgs := s.Messages()
	require.Len(t, msgs, 2)
	require.Equal(t, "news@shop.example", msgs[0].From)
	require.Equal(t, []string{"b@example.com"}, msgs[1].To)
	require.Contains(t, string(msgs[0].Data), "To: <a@example.com>")
	require.Equal(t, int64(len(msgs[0].Data)+len(msgs[1].Data)), st.Bytes)
	require.False(t, msgs[0].TLS)
	// A sink that keeps nothing reads the data without holding it and counts the same bytes.
	counting := start(t, smtpsink.Config{})
	require.NoError(t, send(t, counting, "a@example.com"))
	require.NoError(t, send(t, counting, "b@example.com"))
	require.Equal(t, st.Bytes, counting.Stats().Bytes)
	require.Empty(t, counting.Messages())
	saved, err := os.ReadFile(filepath.Join(dir, "00000002.eml"))
	require.NoError(t, err)
	require.Equal(t, msgs[1].Data, saved)
}

func TestSink_AnswersAsScripted(t *testing.T) {
	t.Parallel()
	s := start(t, smtpsink.Config{Rules: []smtpsink.Rule{
		{Recipient: "Gone@Example.com", Code: 550, Message: "no such user"},
		{Recipient: "@full.example", Code: 452},
		{Recipient: "later@example.com", Code: 451, Times: 2},
		{Recipient: "spam@example.com", Code: 554, AtData: true},
	}})
	require.Equal(t, 550, code(t, send(t, s, "gone@example.com")), "addresses match in any case")
	require.ErrorContains(t, send(t, s, "gone@example.com"), "no such user for <gone@example.com>")
	require.Equal(t, 452, code(t, send(t, s, "x@full.example")))
	require.Equal(t, 451, code(t, send(t, s, "later@example.com")))
	require.Equal(t, 451, code(t, send(t, s, "later@example.com")))
	require.Equal(t, 250, code(t, send(t, s, "later@example.com")), "Times: only the first two attempts")
	require.Equal(t, 554, code(t, send(t, s, "spam@example.com")))
	require.Equal(t, 250, code(t, send(t, s, "ok@example.com")))
	st := s.Stats()
	require.Equal(t, int64(2), st.Accepted)
	require.Equal(t, int64(3), st.Rejected4xx)
	require.Equal(t, int64(3), st.Rejected5xx)

	// A share of recipients, the same ones every time; InFraction names them.
	require.NoError(t, s.SetRules([]smtpsink.Rule{{Code: 550, Fraction: 0.3}}))
	refused := 0
	for i := range 200 {
		addr := fmt.Sprintf("r%d@example.com", i)
		want := 250
		if smtpsink.InFraction(addr, 0.3) {
			want, refused = 550, refused+1
		}
		require.Equal(t, want, code(t, send(t, s, addr)), addr)
	}
	require.InDelta(t, 60, refused, 25, "about 30%% of 200")
	require.ErrorContains(t, s.SetRules([]smtpsink.Rule{{Code: 250}}), "want 400 to 599")
}

func TestParseRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want smtpsink.Rule
		err  string
	}{
		{in: "550=@bounce.example", want: smtpsink.Rule{Code: 550, Recipient: "@bounce.example"}},
		{in: "451=10%:times=2", want: smtpsink.Rule{Code: 451, Fraction: 0.1, Times: 2}},
		{in: "552=big@x.example:data", want: smtpsink.Rule{Code: 552, Recipient: "big@x.example", AtData: true}},
		{in: "421", want: smtpsink.Rule{Code: 421}},
		{in: "250=@x.example", err: "want 400 to 599"},
		{in: "abc", err: "want CODE"},
		{in: "550=0%", err: "above 0 and at most 100"},
		{in: "550=@x.example:times=0", err: "times=N"},
		{in: "550=@x.example:later", err: `unknown option "later"`},
	} {
		got, err := smtpsink.ParseRule(tc.in)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestSink_OffersSTARTTLSAndRequiresAuth(t *testing.T) {
	t.Parallel()
	srvTLS, roots, err := smtpsink.SelfSigned()
	require.NoError(t, err)
	s := start(t, smtpsink.Config{TLS: srvTLS, Username: "relay", Password: "s3cret", Store: true})

	c, err := smtp.Dial(s.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, 502, code(t, c.Mail("news@shop.example")), "AUTH first")
	ok, _ := c.Extension("STARTTLS")
	require.True(t, ok)
	require.NoError(t, c.StartTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}))
	require.NoError(t, c.Auth(smtp.PlainAuth("", "relay", "s3cret", "127.0.0.1")))
	require.NoError(t, c.Mail("news@shop.example"))
	require.NoError(t, c.Rcpt("a@example.com"))
	w, err := c.Data()
	require.NoError(t, err)
	_, err = w.Write([]byte("Subject: tls\r\n\r\nhi\r\n"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, c.Quit())

	// A wrong password is refused (and net/smtp hangs up).
	c2, err := smtp.Dial(s.Addr())
	require.NoError(t, err)
	defer c2.Close()
	require.NoError(t, c2.StartTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}))
	require.Equal(t, 535, code(t, c2.Auth(smtp.PlainAuth("", "relay", "wrong", "127.0.0.1"))))

	msgs := s.Messages()
	require.Len(t, msgs, 1)
	require.True(t, msgs[0].TLS)
	require.Equal(t, "relay", msgs[0].User)
}

func TestSink_PauseHoldsDeliveriesAndWaitForSeesThem(t *testing.T) {
	t.Parallel()
	s := start(t, smtpsink.Config{})
	s.Pause()
	errs := make(chan error, 3)
	for i := range 3 {
		go func() { errs <- sendQuietly(s.Addr(), fmt.Sprintf("p%d@example.com", i)) }()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, s.WaitFor(ctx, func(st smtpsink.Stats) bool { return st.InFlight == 3 }))
	require.Zero(t, s.Stats().Accepted, "held")
	s.Resume()
	for range 3 {
		require.NoError(t, <-errs)
	}
	require.NoError(t, s.WaitFor(ctx, func(st smtpsink.Stats) bool { return st.Accepted == 3 && st.InFlight == 0 }))
	require.Equal(t, int64(3), s.Stats().MaxInFlight)

	short, cancelShort := context.WithCancel(t.Context())
	cancelShort()
	require.ErrorIs(t, s.WaitFor(short, func(st smtpsink.Stats) bool { return st.Accepted == 99 }), context.Canceled)
}

// sendQuietly is send without a *testing.T, for goroutines.
func sendQuietly(addr, to string) error {
	return smtp.SendMail(addr, nil, "news@shop.example", []string{to}, []byte("Subject: x\r\n\r\nx\r\n"))
}

func TestSink_StopWaitsForOpenConnectionsUntilCtxEnds(t *testing.T) {
	t.Parallel()
	s, err := smtpsink.Start(smtpsink.Config{})
	require.NoError(t, err)
	c, err := smtp.Dial(s.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("client"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // an idle connection stays open: a done ctx closes it
	require.NoError(t, s.Stop(ctx))
	require.Error(t, c.Noop(), "the connection was closed")
}

// The sink holds each reply until it reads again, so the replies to commands that arrived
// together leave in one write (RFC 2920); they still reach a client that waits for them, in
// order, with the last one (221 to QUIT) written before the sink hangs up, and through TLS
// (TestSink_OffersSTARTTLSAndRequiresAuth).
func TestSink_HeldRepliesReachTheClientInOrder(t *testing.T) {
	t.Parallel()
	s := start(t, smtpsink.Config{})
	conn, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 4096)
	read := func() string {
		n, err := conn.Read(buf)
		require.NoError(t, err)
		return string(buf[:n])
	}
	require.True(t, strings.HasPrefix(read(), "220 "), "the greeting")
	_, err = conn.Write([]byte("EHLO relay.example\r\n"))
	require.NoError(t, err)
	require.Contains(t, read(), "PIPELINING")
	_, err = conn.Write([]byte("MAIL FROM:<news@shop.example>\r\nRCPT TO:<a@example.com>\r\n"))
	require.NoError(t, err)
	replies := read()
	for !strings.HasSuffix(replies, "\r\n") || strings.Count(replies, "\r\n") < 2 {
		replies += read()
	}
	require.Regexp(t, `^250 [^\r]*\r\n250 [^\r]*\r\n$`, replies, "MAIL's reply, then RCPT's")
	_, err = conn.Write([]byte("QUIT\r\n"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(read(), "221 "), "the last reply is written before the sink hangs up")
	require.Equal(t, int64(4), s.Stats().ReplyWrites, "greeting, EHLO, MAIL and RCPT together, QUIT")
}
