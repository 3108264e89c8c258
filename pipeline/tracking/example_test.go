package tracking_test

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/tailor-email/tailor/pipeline/tracking"
)

// A rendered message of a campaign that tracks opens and clicks: the shop link becomes a signed
// redirect, the unsubscribe and mailto links stay, the pixel goes before </body>.
func ExampleRewriter_Rewrite() {
	key, _ := tracking.DeriveKey("k1", bytes.Repeat([]byte{42}, 32)) // from a --token-key
	tokens, _ := tracking.NewTokens(tracking.TokensConfig{Keys: []tracking.Key{key}})
	rw, _ := tracking.NewRewriter("https://t.example.com", tokens)
	html := rw.Rewrite(`<body><a href="https://shop.example.com/sale">Sale</a>`+
		` <a href="https://t.example.com/unsubscribe/TOK">Unsubscribe</a> <a href="mailto:hi@example.com">Mail us</a></body>`,
		tracking.Message{CampaignID: 7, CustomerID: "c-1", Track: tracking.Track{Opens: true, Clicks: true}})

	fmt.Println(strings.Count(html, `href="https://t.example.com/t/c/`), "tracked link")
	fmt.Println(strings.Contains(html, `href="https://t.example.com/unsubscribe/TOK"`), strings.Contains(html, `href="mailto:hi@example.com"`))
	fmt.Println(strings.Contains(html, `<img src="https://t.example.com/t/o/`))

	tok := html[strings.Index(html, "/t/c/")+5:]
	claims, err := tokens.Parse(tok[:strings.IndexByte(tok, '"')])
	fmt.Println(claims.Kind, claims.CampaignID, claims.CustomerID, claims.URL, err)
	// Output:
	// 1 tracked link
	// true true
	// true
	// click 7 c-1 https://shop.example.com/sale <nil>
}
