package delivery_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/mail"
	"sync"
	"time"

	"github.com/tailor-email/tailor/pipeline/delivery"
	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
)

func ExampleMIMEBuilder_Build() {
	b, err := delivery.NewMIMEBuilder(delivery.MIMEConfig{
		From: "Example Shop <news@shop.example>",
		// A fixed clock and random source make the output reproducible; leave them out.
		Now:  func() time.Time { return time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC) },
		Rand: rand.NewChaCha8([32]byte{}),
	})
	if err != nil {
		panic(err)
	}
	raw, err := b.Build(delivery.Message{
		ID: 7, CampaignID: 3, Email: "zoe@example.com", Name: "Zoë\r\nBcc: eve@example.org",
		Subject: "Ton panier t'attend", Text: "Bonjour Zoë", HTML: "<p>Bonjour Zoë</p>",
		Headers: map[string]string{"List-Unsubscribe": "<https://shop.example/u/tok>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
	})
	if err != nil {
		panic(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		panic(err)
	}
	to, _ := msg.Header.AddressList("To")
	fmt.Printf("To: %q <%s>\n", to[0].Name, to[0].Address)
	subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	fmt.Println("Subject:", subject)
	fmt.Println("a Bcc field:", msg.Header.Get("Bcc") != "")
	for _, h := range []string{"List-Id", "Feedback-Id", "X-Tailor-Campaign", "List-Unsubscribe-Post"} {
		fmt.Printf("%s: %s\n", h, msg.Header.Get(h))
	}
	// Output:
	// To: "Zoë Bcc: eve@example.org" <zoe@example.com>
	// Subject: Ton panier t'attend
	// a Bcc field: false
	// List-Id: <campaign-3.shop.example>
	// Feedback-Id: 3:campaign:tailor
	// X-Tailor-Campaign: 3
	// List-Unsubscribe-Post: List-Unsubscribe=One-Click
}

// sliceSource hands out its messages once and keeps their outcomes: the smallest Source.
type sliceSource struct {
	mu       sync.Mutex
	msgs     []delivery.Message
	outcomes []delivery.Outcome
	done     chan struct{}
}

func (s *sliceSource) Claim(_ context.Context, limit int, _ time.Duration) ([]delivery.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(limit, len(s.msgs))
	out := s.msgs[:n]
	s.msgs = s.msgs[n:]
	return out, nil
}

func (s *sliceSource) Ack(_ context.Context, outcomes []delivery.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outcomes = append(s.outcomes, outcomes...)
	if len(s.outcomes) == 2 {
		close(s.done)
	}
	return nil
}

func ExampleRelay() {
	// An SMTP sink on loopback stands for the provider; it bounces one domain.
	sink, err := smtpsink.Start(smtpsink.Config{Rules: []smtpsink.Rule{{Recipient: "@bounce.example", Code: 550, Message: "no such user"}}})
	if err != nil {
		panic(err)
	}
	defer sink.Close()
	sender, err := delivery.NewSMTPSender(delivery.SMTPConfig{URL: sink.URL()})
	if err != nil {
		panic(err)
	}
	defer sender.Close()
	mime, err := delivery.NewMIMEBuilder(delivery.MIMEConfig{From: "Example Shop <news@shop.example>"})
	if err != nil {
		panic(err)
	}
	source := &sliceSource{done: make(chan struct{}), msgs: []delivery.Message{
		{ID: 1, CampaignID: 3, Email: "zoe@example.com", Subject: "Hi", Text: "Hi"},
		{ID: 2, CampaignID: 3, Email: "gone@bounce.example", Subject: "Hi", Text: "Hi"},
	}}
	relay, err := delivery.NewRelay(delivery.RelayConfig{Source: source, Sender: sender, MIME: mime, Rate: 100,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	if err := relay.Start(context.Background()); err != nil {
		panic(err)
	}
	<-source.done
	if err := relay.Stop(context.Background()); err != nil {
		panic(err)
	}
	for _, o := range source.outcomes {
		if o.MessageID == 2 {
			fmt.Println(o.MessageID, o.Status, o.Bounce, o.Reply)
		} else {
			fmt.Println(o.MessageID, o.Status)
		}
	}
	fmt.Printf("%+v\n", relay.Progress())
	// Unordered output:
	// 1 sent
	// 2 bounced hard 550 5.0.0 no such user for <gone@bounce.example>
	// [{CampaignID:3 Sent:1 Bounced:1 Failed:0 Retried:0 LastError:}]
}
