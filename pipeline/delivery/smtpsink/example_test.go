package smtpsink_test

import (
	"fmt"
	"net/smtp"

	"github.com/tailor-email/tailor/pipeline/delivery/smtpsink"
)

func ExampleStart() {
	sink, err := smtpsink.Start(smtpsink.Config{Rules: []smtpsink.Rule{{Recipient: "@bounce.example", Code: 550}}})
	if err != nil {
		panic(err)
	}
	defer sink.Close()
	msg := []byte("Subject: hi\r\n\r\nhello\r\n")
	fmt.Println(smtp.SendMail(sink.Addr(), nil, "news@shop.example", []string{"zoe@example.com"}, msg))
	fmt.Println(smtp.SendMail(sink.Addr(), nil, "news@shop.example", []string{"gone@bounce.example"}, msg))
	st := sink.Stats()
	fmt.Println(st.Accepted, "accepted,", st.Rejected5xx, "refused")
	// Output:
	// <nil>
	// 550 "5.0.0 scripted permanent failure for <gone@bounce.example>"
	// 1 accepted, 1 refused
}
