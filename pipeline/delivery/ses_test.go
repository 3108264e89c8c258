package delivery_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/pipeline/delivery"
)

// fakeSES records SendEmail calls and answers with err when set, or once with once[recipient].
type fakeSES struct {
	mu    sync.Mutex
	calls []*sesv2.SendEmailInput
	err   error
	once  map[string]error
}

func (f *fakeSES) SendEmail(_ context.Context, in *sesv2.SendEmailInput, _ ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, in)
	if f.err != nil {
		return nil, f.err
	}
	if err := f.once[in.Destination.ToAddresses[0]]; err != nil {
		delete(f.once, in.Destination.ToAddresses[0])
		return nil, err
	}
	return &sesv2.SendEmailOutput{MessageId: aws.String("0100018c-ses-id")}, nil
}

func TestSESSender_SendsTheRawMessage(t *testing.T) {
	t.Parallel()
	client := &fakeSES{}
	s, err := delivery.NewSESSender(delivery.SESConfig{Client: client, ConfigurationSet: "campaigns"})
	require.NoError(t, err)
	raw, err := newBuilder(t).Build(sampleMessage())
	require.NoError(t, err)
	res, err := s.Send(t.Context(), delivery.Envelope{From: "bounces@shop.example", To: "zoe@example.com"}, raw)
	require.NoError(t, err)
	require.Equal(t, delivery.SendResult{ProviderID: "0100018c-ses-id", Reply: "SES accepted 0100018c-ses-id"}, res)
	require.Len(t, client.calls, 1)
	in := client.calls[0]
	require.Equal(t, raw, in.Content.Raw.Data, "SES sends exactly the MIME built")
	require.Nil(t, in.Content.Simple)
	require.Equal(t, []string{"zoe@example.com"}, in.Destination.ToAddresses)
	require.Equal(t, "bounces@shop.example", aws.ToString(in.FeedbackForwardingEmailAddress))
	require.Equal(t, "campaigns", aws.ToString(in.ConfigurationSetName))

	_, err = delivery.NewSESSender(delivery.SESConfig{})
	require.ErrorContains(t, err, "Client is required")
}

func TestSESSender_MapsSESErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err   error
		code  int
		stage delivery.Stage
		reply string
	}{
		{&types.TooManyRequestsException{Message: aws.String("slow down")}, 421, delivery.StageSender, "TooManyRequestsException: slow down"},
		{&types.LimitExceededException{Message: aws.String("daily quota")}, 421, delivery.StageSender, "LimitExceededException: daily quota"},
		{&types.SendingPausedException{Message: aws.String("paused")}, 550, delivery.StageSender, "SendingPausedException: paused"},
		{&types.AccountSuspendedException{Message: aws.String("suspended")}, 550, delivery.StageSender, "AccountSuspendedException: suspended"},
		{&types.MailFromDomainNotVerifiedException{Message: aws.String("verify")}, 550, delivery.StageSender, "MailFromDomainNotVerifiedException: verify"},
		{&types.MessageRejected{Message: aws.String("virus")}, 554, delivery.StageMessage, "MessageRejected: virus"},
		{&types.BadRequestException{Message: aws.String("bad")}, 554, delivery.StageMessage, "BadRequestException: bad"},
	} {
		s, err := delivery.NewSESSender(delivery.SESConfig{Client: &fakeSES{err: tc.err}})
		require.NoError(t, err)
		_, err = s.Send(t.Context(), delivery.Envelope{From: "b@shop.example", To: "z@example.com"}, []byte("x"))
		var rej *delivery.RejectError
		require.ErrorAs(t, err, &rej, "%T", tc.err)
		require.Equal(t, delivery.RejectError{Code: tc.code, Stage: tc.stage, Reply: tc.reply}, *rej)
	}
	for _, plain := range []error{errors.New("dial tcp: i/o timeout"), &types.InternalServiceErrorException{Message: aws.String("oops")}} {
		s, err := delivery.NewSESSender(delivery.SESConfig{Client: &fakeSES{err: plain}})
		require.NoError(t, err)
		_, err = s.Send(t.Context(), delivery.Envelope{From: "b@shop.example", To: "z@example.com"}, []byte("x"))
		var rej *delivery.RejectError
		require.False(t, errors.As(err, &rej), "retried as not sent: %v", err)
	}
}

// Through the relay: SES throttling is retried, a rejected message fails, others are sent.
func TestRelay_OverSES(t *testing.T) {
	t.Parallel()
	client := &fakeSES{once: map[string]error{
		"r1@example.com": &types.TooManyRequestsException{Message: aws.String("slow down")},
		"r2@example.com": &types.MessageRejected{Message: aws.String("virus")},
	}}
	sender, err := delivery.NewSESSender(delivery.SESConfig{Client: client})
	require.NoError(t, err)
	source := newMemSource(20, genMessage)
	r, err := delivery.NewRelay(delivery.RelayConfig{Source: source, Sender: sender, MIME: newBuilder(t), Concurrency: 4,
		PollInterval: time.Millisecond, AckInterval: time.Millisecond, RetryBase: time.Millisecond, RetryMax: time.Millisecond, Logger: discardLogger()})
	require.NoError(t, err)
	require.NoError(t, r.Start(t.Context()))
	source.waitDone(t)
	require.NoError(t, r.Stop(t.Context()))
	source.requireClean(t)
	for id, o := range source.finals() {
		if id == 2 {
			require.Equal(t, delivery.StatusFailed, o.Status)
			require.Equal(t, "MessageRejected: virus", o.Reply)
			continue
		}
		require.Equal(t, delivery.StatusSent, o.Status)
		require.Equal(t, "0100018c-ses-id", o.ProviderID)
	}
	require.Len(t, client.calls, 21, "r1 twice")
	source.mu.Lock()
	defer source.mu.Unlock()
	require.Len(t, source.retries, 1)
	require.Equal(t, "TooManyRequestsException: slow down", source.retries[0].Reply)
}
