package app

import (
	"errors"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/pipeline/delivery"
)

// RelayOptions say how a relay delivers: over SMTP (SMTP.URL set) or through Amazon SES.
type RelayOptions struct {
	// SMTP configures the SMTP sender; its URL "" means SES.
	SMTP delivery.SMTPConfig
	// SESConfigurationSet names the SES configuration set (SES only).
	SESConfigurationSet string
	// SESEndpoint overrides the SES API endpoint (a VPC endpoint, an emulator); "" is the
	// region's.
	SESEndpoint string
	// MIME builds the messages (From is required).
	MIME delivery.MIMEConfig
	// Relay is the relay's configuration; Source, Sender and MIME are filled in here.
	Relay delivery.RelayConfig
	// CampaignID narrows the relay to one campaign; 0: any.
	CampaignID int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Relay returns a relay that claims straight from Postgres (delivery.Store.Source, the same
// store the sender API serves), its store, and the sender to close once the relay stopped.
func Relay(b *backends.Backends, o RelayOptions) (*delivery.Relay, *delivery.Store, func() error, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	store, err := delivery.NewStore(delivery.StoreConfig{DB: b.Pool, Logger: o.Logger})
	if err != nil {
		return nil, nil, nil, err
	}
	mime, err := delivery.NewMIMEBuilder(o.MIME)
	if err != nil {
		return nil, nil, nil, err
	}
	var sender delivery.Sender
	closeSender := func() error { return nil }
	if o.SMTP.URL != "" {
		o.SMTP.MaxConns = max(o.SMTP.MaxConns, o.Relay.Concurrency)
		o.SMTP.Logger = o.Logger
		s, err := delivery.NewSMTPSender(o.SMTP)
		if err != nil {
			return nil, nil, nil, err
		}
		sender, closeSender = s, s.Close
	} else {
		if b.AWS.Region == "" {
			return nil, nil, nil, errors.New("relay: SES needs an AWS region (AWS_REGION)")
		}
		client := sesv2.NewFromConfig(b.AWS, func(so *sesv2.Options) {
			if o.SESEndpoint != "" {
				so.BaseEndpoint = aws.String(o.SESEndpoint)
			}
		})
		s, err := delivery.NewSESSender(delivery.SESConfig{Client: client, ConfigurationSet: o.SESConfigurationSet})
		if err != nil {
			return nil, nil, nil, err
		}
		sender = s
	}
	cfg := o.Relay
	cfg.Source, cfg.Sender, cfg.MIME, cfg.Logger = store.Source(o.CampaignID), sender, mime, o.Logger
	r, err := delivery.NewRelay(cfg)
	if err != nil {
		_ = closeSender()
		return nil, nil, nil, err
	}
	return r, store, closeSender, nil
}
