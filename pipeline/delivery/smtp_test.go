package delivery_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
)

func newSinkAndSender(t *testing.T, sinkCfg smtpsink.Config, cfg delivery.SMTPConfig) (*smtpsink.Sink, *delivery.SMTPSender) {
	t.Helper()
	sink, err := smtpsink.Start(sinkCfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sink.Close()) })
	cfg.URL = sink.URL()
	sender, err := delivery.NewSMTPSender(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sender.Close()) })
	return sink, sender
}

var testRaw = []byte("Subject: hi\r\nTo: <x@example.com>\r\n\r\nhello\r\n")

func TestSMTPSender_ReusesAConnectionAfterARefusal(t *testing.T) {
	t.Parallel()
	sink, sender := newSinkAndSender(t, smtpsink.Config{Rules: []smtpsink.Rule{{Recipient: "gone@example.com", Code: 550}}}, delivery.SMTPConfig{MaxConns: 1})
	env := delivery.Envelope{From: "news@shop.example"}
	for _, to := range []string{"a@example.com", "gone@example.com", "b@example.com"} {
		env.To = to
		_, err := sender.Send(t.Context(), env, testRaw)
		if to == "gone@example.com" {
			var rej *delivery.RejectError
			require.ErrorAs(t, err, &rej)
			require.Equal(t, delivery.StageRecipient, rej.Stage)
			require.Equal(t, 550, rej.Code)
			continue
		}
		require.NoError(t, err)
	}
	require.Equal(t, int64(1), sender.Dials(), "one connection, reset after the refusal")
	require.Equal(t, int64(2), sink.Stats().Accepted)
}

func TestSMTPSender_ReplacesAConnectionTheServerDropped(t *testing.T) {
	t.Parallel()
	sink, sender := newSinkAndSender(t, smtpsink.Config{}, delivery.SMTPConfig{MaxConns: 1})
	env := delivery.Envelope{From: "news@shop.example", To: "a@example.com"}
	_, err := sender.Send(t.Context(), env, testRaw)
	require.NoError(t, err)
	sink.DropConnections() // the pooled connection is dead now
	res, err := sender.Send(t.Context(), env, testRaw)
	require.NoError(t, err, "a dead pooled connection is replaced before anything is sent")
	require.Equal(t, "sink-2", res.ProviderID)
	require.Equal(t, int64(2), sender.Dials())
	require.Equal(t, int64(2), sink.Stats().Accepted, "no message lost or doubled")
}

func TestSMTPSender_OpensANewConnectionAfterMessagesPerConn(t *testing.T) {
	t.Parallel()
	sink, sender := newSinkAndSender(t, smtpsink.Config{}, delivery.SMTPConfig{MaxConns: 1, MessagesPerConn: 3})
	for range 7 {
		_, err := sender.Send(t.Context(), delivery.Envelope{From: "news@shop.example", To: "a@example.com"}, testRaw)
		require.NoError(t, err)
	}
	require.Equal(t, int64(3), sender.Dials(), "3 + 3 + 1")
	require.Equal(t, int64(3), sink.Stats().Connections)
	require.NoError(t, sender.Close())
	_, err := sender.Send(t.Context(), delivery.Envelope{From: "news@shop.example", To: "a@example.com"}, testRaw)
	require.ErrorContains(t, err, "SMTP sender closed")
}

// Pipelined (MAIL and RCPT in one write): a refusal of MAIL is answered as the sender's fault,
// RCPT's answer to it is read too, the message is not sent, and the connection stays in step
// for the next message.
func TestSMTPSender_PipelinedRefusalKeepsTheConnectionInStep(t *testing.T) {
	t.Parallel()
	sink, sender := newSinkAndSender(t, smtpsink.Config{Username: "u", Password: "p"}, delivery.SMTPConfig{MaxConns: 1})
	env := delivery.Envelope{From: "news@shop.example", To: "a@example.com"}
	for range 3 {
		_, err := sender.Send(t.Context(), env, testRaw)
		var rej *delivery.RejectError
		require.ErrorAs(t, err, &rej)
		require.Equal(t, delivery.StageSender, rej.Stage, rej.Reply)
		require.Equal(t, 5, rej.Code/100, rej.Reply)
		require.Contains(t, rej.Reply, "authenticate", "MAIL's own answer, not RCPT's")
	}
	require.Equal(t, int64(1), sender.Dials(), "one connection throughout")
	require.Zero(t, sink.Stats().Accepted)
}

// A recipient address that could extend the SMTP command is never written as it is.
func TestSMTPSender_RefusesAddressesThatWouldInjectCommands(t *testing.T) {
	t.Parallel()
	sink, sender := newSinkAndSender(t, smtpsink.Config{}, delivery.SMTPConfig{MaxConns: 1})
	_, err := sender.Send(t.Context(), delivery.Envelope{From: "news@shop.example", To: "a@example.com>\r\nRCPT TO:<b@example.com"}, testRaw)
	require.Error(t, err)
	require.Zero(t, sink.Stats().Accepted)
}
