package delivery

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
)

// SESClient is the part of the Amazon SES v2 client an SESSender uses; *sesv2.Client has it.
type SESClient interface {
	SendEmail(ctx context.Context, in *sesv2.SendEmailInput, optFns ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error)
}

var _ SESClient = (*sesv2.Client)(nil)

// SESConfig configures an SESSender.
type SESConfig struct {
	// Client is the SES v2 client (sesv2.NewFromConfig with the standard AWS configuration).
	// Required.
	Client SESClient
	// ConfigurationSet names the SES configuration set (event publishing of bounces,
	// complaints, opens); default none.
	ConfigurationSet string
}

// SESSender delivers messages through Amazon SES v2's SendEmail with the raw MIME message:
// SES sends exactly what MIMEBuilder built. Bounces and complaints reach SES's own
// notifications, not the answer. It implements Sender and is safe for concurrent use.
type SESSender struct{ cfg SESConfig }

// NewSESSender checks cfg.
func NewSESSender(cfg SESConfig) (*SESSender, error) {
	if cfg.Client == nil {
		return nil, errors.New("delivery: SESConfig.Client is required")
	}
	return &SESSender{cfg: cfg}, nil
}

// Send implements Sender. SES's refusals become a *RejectError: throttling is a temporary
// refusal of the sender (retried), a suspended or paused account or an unverified MAIL FROM
// domain a permanent one (retried too: no recipient is at fault; fix the account), and a
// rejected or malformed message a refusal of the message (failed).
func (s *SESSender) Send(ctx context.Context, env Envelope, raw []byte) (SendResult, error) {
	in := &sesv2.SendEmailInput{
		Content:                        &types.EmailContent{Raw: &types.RawMessage{Data: raw}},
		Destination:                    &types.Destination{ToAddresses: []string{env.To}},
		FeedbackForwardingEmailAddress: aws.String(env.From),
	}
	if s.cfg.ConfigurationSet != "" {
		in.ConfigurationSetName = aws.String(s.cfg.ConfigurationSet)
	}
	out, err := s.cfg.Client.SendEmail(ctx, in)
	if err != nil {
		return SendResult{}, sesRejection(err)
	}
	id := aws.ToString(out.MessageId)
	return SendResult{ProviderID: id, Reply: "SES accepted " + id}, nil
}

// sesRejection maps SES's errors onto RejectError; others (network, SES's internal errors)
// pass through, to be retried.
func sesRejection(err error) error {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return err
	}
	reply := fmt.Sprintf("%s: %s", apiErr.ErrorCode(), apiErr.ErrorMessage())
	var (
		throttled  *types.TooManyRequestsException
		limited    *types.LimitExceededException
		suspended  *types.AccountSuspendedException
		paused     *types.SendingPausedException
		unverified *types.MailFromDomainNotVerifiedException
		notFound   *types.NotFoundException
		rejected   *types.MessageRejected
		bad        *types.BadRequestException
	)
	switch {
	case errors.As(err, &throttled), errors.As(err, &limited):
		return &RejectError{Code: 421, Stage: StageSender, Reply: reply}
	case errors.As(err, &suspended), errors.As(err, &paused), errors.As(err, &unverified), errors.As(err, &notFound):
		return &RejectError{Code: 550, Stage: StageSender, Reply: reply}
	case errors.As(err, &rejected), errors.As(err, &bad):
		return &RejectError{Code: 554, Stage: StageMessage, Reply: reply}
	}
	return err
}
