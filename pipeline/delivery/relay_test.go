package delivery_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tailor-email/tailor/internal/testenv"
	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
)

func TestMain(m *testing.M) {
	if os.Getenv(childSinkEnv) != "" {
		os.Exit(runChildSink())
	}
	code := testenv.Run(m)
	if code == 0 {
		// The AWS SDK's pooled HTTP connections (the outbox test's Kinesis client) idle on.
		if err := goleak.Find(goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// genMessage makes message id for recipient r<id>@example.com, in campaign 1 or 2.
func genMessage(id int64) delivery.Message {
	return delivery.Message{
		CampaignID: 1 + id%2, CustomerID: fmt.Sprint("c", id), Email: fmt.Sprintf("r%d@example.com", id),
		Name: "Recipient " + fmt.Sprint(id), Subject: "Hello", HTML: "<p>Hi</p>", Text: "Hi",
	}
}

// newBuilder is a builder with the default, concurrency-safe random source, for relays.
func newBuilder(t testing.TB) *delivery.MIMEBuilder {
	t.Helper()
	b, err := delivery.NewMIMEBuilder(delivery.MIMEConfig{From: "Example Shop <news@shop.example>"})
	require.NoError(t, err)
	return b
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// logRecords is a slog handler that keeps every record as one line, "message key=value ...".
type logRecords struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }

func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	return nil
}

func (l *logRecords) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

type relayEnv struct {
	sink   *smtpsink.Sink
	sender *delivery.SMTPSender
	source *memSource
	relay  *delivery.Relay
	logs   *logRecords
	cfg    delivery.RelayConfig
}

type relaySetup struct {
	messages int
	gen      func(int64) delivery.Message
	sink     smtpsink.Config
	smtp     delivery.SMTPConfig // URL defaults to the sink's
	relay    delivery.RelayConfig
	clock    *fakeClock // drives the rate limits and the source's retry delays when set
}

// startRelay runs a relay from an in-memory source to an in-repo sink until the test ends.
func startRelay(t *testing.T, s relaySetup) *relayEnv {
	t.Helper()
	e := newRelayEnv(t, s)
	require.NoError(t, e.relay.Start(t.Context()))
	t.Cleanup(func() { e.stop(t) })
	return e
}

func newRelayEnv(t *testing.T, s relaySetup) *relayEnv {
	t.Helper()
	sink, err := smtpsink.Start(s.sink)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sink.Close()) })
	if s.smtp.URL == "" {
		s.smtp.URL = sink.URL()
	}
	s.smtp.MaxConns = max(s.smtp.MaxConns, s.relay.Concurrency)
	logs := &logRecords{}
	logger := slog.New(logs)
	s.smtp.Logger = logger
	sender, err := delivery.NewSMTPSender(s.smtp)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sender.Close()) })
	if s.gen == nil {
		s.gen = genMessage
	}
	source := newMemSource(s.messages, s.gen)
	cfg := s.relay
	cfg.Source, cfg.Sender = source, sender
	cfg.MIME = newBuilder(t)
	cfg.PollInterval = 5 * time.Millisecond
	cfg.RetryBase, cfg.RetryMax = time.Millisecond, 8*time.Millisecond
	cfg.AckInterval = time.Millisecond
	cfg.Logger = logger
	if s.clock != nil {
		source.now = s.clock.Now
		cfg = delivery.WithClock(cfg, s.clock.Now, s.clock.Wait)
	}
	r, err := delivery.NewRelay(cfg)
	require.NoError(t, err)
	return &relayEnv{sink: sink, sender: sender, source: source, relay: r, logs: logs, cfg: cfg}
}

// stop stops the relay gracefully, or hard after a while (a fake clock holds its sends).
func (e *relayEnv) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := e.relay.Stop(ctx)
	if err != nil {
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
}

func TestRelay_DeliversEveryMessageOnceOverPooledConnections(t *testing.T) {
	t.Parallel()
	const n = 600
	e := startRelay(t, relaySetup{messages: n, sink: smtpsink.Config{Store: true}, relay: delivery.RelayConfig{Concurrency: 4, ClaimBatch: 50}})
	e.source.waitDone(t)
	require.NoError(t, e.relay.Stop(t.Context()))
	e.source.requireClean(t)

	finals := e.source.finals()
	require.Len(t, finals, n)
	seen := map[string]bool{}
	for id, o := range finals {
		require.Equal(t, delivery.StatusSent, o.Status, "message %d: %+v", id, o)
		require.Regexp(t, `^sink-\d+$`, o.ProviderID)
		require.Equal(t, "250 2.0.0 OK: queued as "+o.ProviderID, o.Reply)
		require.False(t, seen[o.ProviderID], "provider ids are per message")
		seen[o.ProviderID] = true
	}
	st := e.sink.Stats()
	require.Equal(t, int64(n), st.Accepted, "each message once")
	require.LessOrEqual(t, st.Connections, int64(4), "connections are pooled and reused: at most one per worker")
	require.Equal(t, st.Connections, e.sender.Dials())
	require.LessOrEqual(t, st.MaxInFlight, int64(4), "never more than Concurrency at once")

	byRecipient := map[string]int{}
	for _, m := range e.sink.Messages() {
		require.Equal(t, "news@shop.example", m.From, "the envelope sender is From's address")
		require.Len(t, m.To, 1)
		byRecipient[m.To[0]]++
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		require.NoError(t, err)
		to, err := msg.Header.AddressList("To")
		require.NoError(t, err)
		require.Equal(t, m.To[0], to[0].Address, "the header's recipient is the envelope's")
	}
	require.Len(t, byRecipient, n)
	for r, c := range byRecipient {
		require.Equal(t, 1, c, r)
	}

	// A progress line per campaign when the relay is done.
	logs := e.logs.String()
	require.Contains(t, logs, "relay done campaign=1 sent=300 bounced=0 failed=0 retried=0")
	require.Contains(t, logs, "relay done campaign=2 sent=300 bounced=0 failed=0 retried=0")
	require.Equal(t, []delivery.CampaignProgress{{CampaignID: 1, Sent: 300}, {CampaignID: 2, Sent: 300}}, e.relay.Progress())
}

func TestRelay_MapsProviderAnswersToOutcomes(t *testing.T) {
	t.Parallel()
	special := map[int64]string{
		1: "gone@bounce.example",   // 550 at RCPT: hard bounce
		2: "spam@example.com",      // 554 after DATA: hard bounce
		3: "later@example.com",     // 451 twice, then accepted
		4: "greylist@example.com",  // 451 always: soft bounce on the 3rd attempt
		5: "not an address",        // cannot be built: failed
		6: "fine@example.com",      // accepted at once
		7: "queue@full.example",    // 452 once, then accepted
		8: "nobody@bounce.example", // 550 too
	}
	gen := func(id int64) delivery.Message {
		m := genMessage(id)
		m.CampaignID, m.Email = 9, special[id]
		return m
	}
	e := startRelay(t, relaySetup{
		messages: len(special), gen: gen,
		sink: smtpsink.Config{Rules: []smtpsink.Rule{
			{Recipient: "@bounce.example", Code: 550, Message: "no such user"},
			{Recipient: "spam@example.com", Code: 554, AtData: true, Message: "looks like spam"},
			{Recipient: "later@example.com", Code: 451, Times: 2},
			{Recipient: "greylist@example.com", Code: 451, Message: "greylisted"},
			{Recipient: "@full.example", Code: 452, Times: 1},
		}},
		relay: delivery.RelayConfig{Concurrency: 2, MaxAttempts: 3},
	})
	e.source.waitDone(t)
	require.NoError(t, e.relay.Stop(t.Context()))
	e.source.requireClean(t)

	f := e.source.finals()
	require.Equal(t, delivery.StatusBounced, f[1].Status)
	require.Equal(t, delivery.BounceHard, f[1].Bounce)
	require.Equal(t, "550 5.0.0 no such user for <gone@bounce.example>", f[1].Reply)
	require.Equal(t, delivery.BounceHard, f[8].Bounce)
	require.Equal(t, delivery.StatusBounced, f[2].Status)
	require.Equal(t, delivery.BounceHard, f[2].Bounce)
	require.Equal(t, "554 5.0.0 looks like spam for <spam@example.com>", f[2].Reply)
	require.Equal(t, delivery.StatusSent, f[3].Status)
	require.Equal(t, delivery.StatusBounced, f[4].Status)
	require.Equal(t, delivery.BounceSoft, f[4].Bounce)
	require.Equal(t, "451 4.0.0 greylisted for <greylist@example.com>", f[4].Reply)
	require.Equal(t, "refused temporarily on 3 attempts", f[4].Reason)
	require.Equal(t, delivery.StatusFailed, f[5].Status)
	require.Contains(t, f[5].Reason, "email: \"not an address\"")
	require.Equal(t, delivery.StatusSent, f[6].Status)
	require.Equal(t, delivery.StatusSent, f[7].Status)

	// The retries: two for later@, two for greylist@, one for queue@; each with a delay in
	// the upper half of RetryBase·2^attempt (1 ms, 2 ms).
	e.source.mu.Lock()
	retries := append([]delivery.Outcome(nil), e.source.retries...)
	attempts := map[int64]int{3: e.source.attempts[3], 4: e.source.attempts[4], 7: e.source.attempts[7]}
	e.source.mu.Unlock()
	perMessage := map[int64][]time.Duration{}
	for _, o := range retries {
		require.Equal(t, delivery.StatusRetry, o.Status)
		require.True(t, strings.HasPrefix(o.Reply, "45"), o.Reply)
		perMessage[o.MessageID] = append(perMessage[o.MessageID], o.RetryAfter)
	}
	require.Len(t, perMessage[3], 2)
	require.Len(t, perMessage[4], 2)
	require.Len(t, perMessage[7], 1)
	for _, ds := range perMessage {
		for a, d := range ds {
			base := time.Millisecond << a
			require.GreaterOrEqual(t, d, base/2, "attempt %d", a)
			require.LessOrEqual(t, d, base, "attempt %d", a)
		}
	}
	require.Equal(t, map[int64]int{3: 3, 4: 3, 7: 2}, attempts, "hand-outs per message")
	require.Equal(t, []delivery.CampaignProgress{{CampaignID: 9, Sent: 3, Bounced: 4, Failed: 1, Retried: 5, LastError: e.relay.Progress()[0].LastError}}, e.relay.Progress())
	require.Contains(t, e.logs.String(), "relay done campaign=9 sent=3 bounced=4 failed=1 retried=5")
}

func TestRelay_SendsConcurrentlyUpToItsConcurrency(t *testing.T) {
	t.Parallel()
	e := newRelayEnv(t, relaySetup{messages: 40, relay: delivery.RelayConfig{Concurrency: 4}})
	e.sink.Pause()
	require.NoError(t, e.relay.Start(t.Context()))
	t.Cleanup(func() { e.stop(t) })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Four messages are held inside the sink at once: four sends in parallel.
	require.NoError(t, e.sink.WaitFor(ctx, func(s smtpsink.Stats) bool { return s.InFlight == 4 }))
	require.Zero(t, e.sink.Stats().Accepted)
	e.sink.Resume()
	e.source.waitDone(t)
	require.Equal(t, int64(4), e.sink.Stats().MaxInFlight, "and never more")
	require.Equal(t, int64(40), e.sink.Stats().Accepted)
}

// The global rate: with time standing still only the burst goes out; each second of the
// fake clock lets exactly Rate more through. Counts, not wall time.
func TestRelay_HonoursTheRateLimit(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	// 8 per second: one message every 125 ms, a step the clock can take exactly.
	e := startRelay(t, relaySetup{messages: 200, clock: clk, relay: delivery.RelayConfig{Concurrency: 4, Rate: 8, Burst: 5, ClaimBatch: 20}})
	accepted := func() int64 { return e.sink.Stats().Accepted }
	clk.waitWaiting(t, 4) // every worker waits for the rate
	require.Equal(t, int64(5), accepted(), "the burst")
	for step := range int64(16) {
		clk.Advance(125 * time.Millisecond)
		clk.waitWaiting(t, 4)
		require.Equal(t, 5+step+1, accepted(), "one more every 125 ms (step %d)", step)
	}
}

func TestRelay_HonoursTheRatePerRecipientDomain(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	gen := func(id int64) delivery.Message {
		m := genMessage(id)
		m.Email = fmt.Sprintf("r%d@%s.example", id, []string{"a", "b"}[id%2])
		return m
	}
	e := startRelay(t, relaySetup{messages: 100, gen: gen, clock: clk, sink: smtpsink.Config{Store: true},
		relay: delivery.RelayConfig{Concurrency: 4, DomainRate: 2, ClaimBatch: 10}})
	perDomain := func() map[string]int {
		out := map[string]int{}
		for _, m := range e.sink.Messages() {
			out[m.To[0][strings.IndexByte(m.To[0], '@')+1:]]++
		}
		return out
	}
	clk.waitWaiting(t, 4)
	require.Equal(t, map[string]int{"a.example": 1, "b.example": 1}, perDomain(), "one each (DomainBurst 1)")
	clk.Advance(1050 * time.Millisecond)
	clk.waitWaiting(t, 4)
	require.Equal(t, map[string]int{"a.example": 3, "b.example": 3}, perDomain(), "and 2 per second each")
}

// A domain whose rate would keep a message waiting longer than a quarter of its lease gets it
// back as a retry, with the wait as its delay, instead of holding the lease.
func TestRelay_HandsBackMessagesADomainsRateWouldHoldTooLong(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	e := startRelay(t, relaySetup{messages: 6, clock: clk,
		relay: delivery.RelayConfig{Concurrency: 3, DomainRate: 1, Lease: 4 * time.Second, ClaimBatch: 6}})
	// At once: one sent, one waits a second (a quarter of the lease), the others come back.
	e.source.waitFor(t, func(s *memSource) bool { return len(s.final) == 1 && len(s.retries) >= 4 })
	clk.waitWaiting(t, 1)
	e.source.mu.Lock()
	retries := append([]delivery.Outcome(nil), e.source.retries...)
	e.source.mu.Unlock()
	for _, o := range retries {
		require.Equal(t, delivery.StatusRetry, o.Status)
		require.Contains(t, o.Reason, "the recipient's domain is at its rate")
		require.Greater(t, o.RetryAfter, time.Second)
	}
	// As the clock moves, they all go, one a second.
	for i := 2; i <= 6; i++ {
		clk.Advance(time.Second)
		e.source.waitFor(t, func(s *memSource) bool { return len(s.final) >= i })
	}
	e.source.waitDone(t)
	require.Equal(t, int64(6), e.sink.Stats().Accepted)
}

func TestRelay_STARTTLSAndAuth(t *testing.T) {
	t.Parallel()
	srvTLS, roots, err := smtpsink.SelfSigned()
	require.NoError(t, err)
	sinkCfg := smtpsink.Config{TLS: srvTLS, Username: "relay", Password: "p@ss word", Store: true}
	clientTLS := &tls.Config{RootCAs: roots}

	// STARTTLS when offered (TLSAuto), AUTH PLAIN from the URL's user info.
	sink, err := smtpsink.Start(sinkCfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sink.Close()) })
	url := "smtp://relay:p%40ss%20word@" + sink.Addr()
	e := startRelay(t, relaySetup{messages: 5, smtp: delivery.SMTPConfig{URL: url, TLSConfig: clientTLS}, relay: delivery.RelayConfig{Concurrency: 1}})
	e.source.waitDone(t)
	msgs := sink.Messages()
	require.Len(t, msgs, 5)
	for _, m := range msgs {
		require.True(t, m.TLS)
		require.Equal(t, "relay", m.User)
	}

	// What fails at Start: a wrong password, an untrusted certificate, STARTTLS required of a
	// server without it, AUTH in plain text beyond loopback.
	for _, tc := range []struct {
		smtp delivery.SMTPConfig
		sink smtpsink.Config
		want string
	}{
		{delivery.SMTPConfig{URL: "smtp://relay:wrong@ADDR", TLSConfig: clientTLS}, sinkCfg, "AUTH PLAIN as \"relay\""},
		{delivery.SMTPConfig{URL: "smtp://relay:x@ADDR"}, sinkCfg, "certificate"},
		{delivery.SMTPConfig{URL: "smtp://ADDR", TLS: delivery.TLSStartTLS}, smtpsink.Config{}, "STARTTLS"},
		{delivery.SMTPConfig{URL: "smtp://ADDR", Username: "u"}, smtpsink.Config{}, "the server offers no AUTH PLAIN"},
	} {
		s, err := smtpsink.Start(tc.sink)
		require.NoError(t, err)
		tc.smtp.URL = strings.Replace(tc.smtp.URL, "ADDR", s.Addr(), 1)
		sender, err := delivery.NewSMTPSender(tc.smtp)
		require.NoError(t, err)
		r, err := delivery.NewRelay(delivery.RelayConfig{Source: newMemSource(1, genMessage), Sender: sender, MIME: newBuilder(t)})
		require.NoError(t, err)
		err = r.Start(t.Context())
		require.ErrorContains(t, err, tc.want, tc.smtp.URL)
		require.ErrorContains(t, err, "relay: check the sender")
		require.NoError(t, sender.Close())
		require.NoError(t, s.Close())
	}
	sender, err := delivery.NewSMTPSender(delivery.SMTPConfig{URL: "smtp://u:p@192.0.2.1:25", TLS: delivery.TLSOff})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = sender.Send(ctx, delivery.Envelope{From: "a@b.example", To: "c@d.example"}, []byte("x"))
	require.Error(t, err, "nobody listens at 192.0.2.1 (TEST-NET-1)")
	require.NoError(t, sender.Close())
}

func TestNewSMTPSender_ChecksItsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  delivery.SMTPConfig
		want string
	}{
		{delivery.SMTPConfig{}, "want smtp://"},
		{delivery.SMTPConfig{URL: "http://x.example"}, "want smtp://"},
		{delivery.SMTPConfig{URL: "smtp://u:secret@x.example/path"}, "smtp://u:xxxxx@x.example/path"},
		{delivery.SMTPConfig{URL: "smtps://x.example", TLS: delivery.TLSOff}, "always uses TLS"},
		{delivery.SMTPConfig{URL: "smtp://x.example", TLS: "maybe"}, "want auto, starttls or off"},
	} {
		_, err := delivery.NewSMTPSender(tc.cfg)
		require.ErrorContains(t, err, tc.want, tc.cfg.URL)
		require.NotContains(t, err.Error(), "secret")
	}
	for in, want := range map[string]delivery.TLSMode{"auto": delivery.TLSAuto, "": delivery.TLSAuto, "STARTTLS": delivery.TLSStartTLS, "off": delivery.TLSOff} {
		got, err := delivery.ParseTLSMode(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err := delivery.ParseTLSMode("sometimes")
	require.ErrorContains(t, err, "want auto, starttls or off")
}

// scriptedSender answers each recipient as scripted, without any network: for the outcomes
// of refusals an SMTP sink cannot script (the sender, the message, no answer at all).
type scriptedSender map[string]error

func (s scriptedSender) Send(_ context.Context, env delivery.Envelope, _ []byte) (delivery.SendResult, error) {
	if err := s[env.To]; err != nil {
		return delivery.SendResult{}, err
	}
	return delivery.SendResult{ProviderID: "p-" + env.To, Reply: "250 ok"}, nil
}

func TestRelay_RetriesWhatIsNotTheRecipientsFault(t *testing.T) {
	t.Parallel()
	sender := scriptedSender{
		"r1@example.com": &delivery.RejectError{Code: 550, Stage: delivery.StageSender, Reply: "550 5.7.1 sender not allowed"},
		"r2@example.com": errors.New("dial tcp: connection refused"),
		"r3@example.com": &delivery.RejectError{Code: 554, Stage: delivery.StageMessage, Reply: "MessageRejected: virus"},
	}
	source := newMemSource(4, genMessage)
	r, err := delivery.NewRelay(delivery.RelayConfig{Source: source, Sender: sender, MIME: newBuilder(t),
		MaxAttempts: 2, RetryBase: time.Millisecond, RetryMax: time.Millisecond, PollInterval: time.Millisecond, AckInterval: time.Millisecond,
		Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, r.Start(t.Context()))
	// r1 and r2 are retried past MaxAttempts, never bounced or failed.
	source.waitFor(t, func(s *memSource) bool { return s.attempts[1] > 3 && s.attempts[2] > 3 && len(s.final) == 2 })
	require.NoError(t, r.Stop(t.Context()))
	source.requireClean(t)
	f := source.finals()
	require.Equal(t, delivery.StatusFailed, f[3].Status)
	require.Equal(t, "MessageRejected: virus", f[3].Reply)
	require.Equal(t, delivery.StatusSent, f[4].Status)
	require.Equal(t, "p-r4@example.com", f[4].ProviderID)
	source.mu.Lock()
	defer source.mu.Unlock()
	for _, o := range source.retries {
		switch o.MessageID {
		case 1:
			require.Equal(t, "550 5.7.1 sender not allowed", o.Reply)
			require.Contains(t, o.Reason, "refused the sender")
		case 2:
			require.Contains(t, o.Reason, "connection refused")
		default:
			t.Fatalf("unexpected retry %+v", o)
		}
	}
}

// A graceful stop sends and acks every message the relay holds and claims no more; a failing
// Ack is tried again.
func TestRelay_StopFinishesWhatItHolds(t *testing.T) {
	t.Parallel()
	e := newRelayEnv(t, relaySetup{messages: 10_000, relay: delivery.RelayConfig{Concurrency: 4, ClaimBatch: 100}})
	e.source.ackErrs = 2
	require.NoError(t, e.relay.Start(t.Context()))
	e.source.waitFor(t, func(s *memSource) bool { return len(s.final) >= 300 })
	require.NoError(t, e.relay.Stop(t.Context()))
	<-e.relay.Stopped()
	e.source.requireClean(t) // nothing held, no violations
	f := e.source.finals()
	require.Less(t, len(f), 10_000, "stopped early")
	require.Equal(t, int64(len(f)), e.sink.Stats().Accepted, "every accepted message was acked, once")
	e.source.mu.Lock()
	handedOut := e.source.next - 1
	e.source.mu.Unlock()
	require.Equal(t, int64(len(f)), handedOut, "no message was claimed and left unacked")
	require.Contains(t, e.logs.String(), "relay done")
}

func TestNewRelay_ChecksItsConfig(t *testing.T) {
	t.Parallel()
	b := newBuilder(t)
	src, snd := newMemSource(0, genMessage), scriptedSender{}
	for _, tc := range []struct {
		cfg  delivery.RelayConfig
		want string
	}{
		{delivery.RelayConfig{Sender: snd, MIME: b}, "Source is required"},
		{delivery.RelayConfig{Source: src, MIME: b}, "Sender is required"},
		{delivery.RelayConfig{Source: src, Sender: snd}, "MIME is required"},
		{delivery.RelayConfig{Source: src, Sender: snd, MIME: b, ClaimBatch: 501}, "ClaimBatch 501: want 1 to 500"},
		{delivery.RelayConfig{Source: src, Sender: snd, MIME: b, Rate: -1}, "must not be negative"},
		{delivery.RelayConfig{Source: src, Sender: snd, MIME: b, EnvelopeFrom: "bounces"}, "EnvelopeFrom"},
		{delivery.RelayConfig{Source: src, Sender: snd, MIME: b, Rate: 1, Lease: time.Minute}, "raise Lease or lower ClaimBatch"},
	} {
		_, err := delivery.NewRelay(tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
	r, err := delivery.NewRelay(delivery.RelayConfig{Source: src, Sender: snd, MIME: b})
	require.NoError(t, err)
	require.ErrorContains(t, r.Stop(t.Context()), "Stop before Start")
}

func TestProviderID(t *testing.T) {
	t.Parallel()
	for reply, want := range map[string]string{
		"2.0.0 Ok: queued as 4Zx9Yq1mKz":     "4Zx9Yq1mKz",
		"2.0.0 OK: queued as <sink-17>":      "sink-17",
		"Ok 0100018c2f5e7a1b-5d3c9a1e-0000":  "0100018c2f5e7a1b-5d3c9a1e-0000",
		"2.0.0 Ok 0100018c2f5e7a1b-5d3c9a1e": "0100018c2f5e7a1b-5d3c9a1e",
		"2.0.0 OK":                           "",
		"Ok":                                 "",
		"OK id=1a2b3c":                       "",
	} {
		require.Equal(t, want, delivery.ProviderID(reply), reply)
	}
}
