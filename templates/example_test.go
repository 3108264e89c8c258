package templates_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/tailor-email/tailor/templates"
	"github.com/tailor-email/tailor/templates/contentdemo"
)

// handlerTransport answers every request with an in-process handler, whatever the host, so the
// example template's 127.0.0.1:8089 URLs reach the demo content service without a listener.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func demoClient() *http.Client {
	h, err := contentdemo.NewHandler(contentdemo.Config{
		Now: func() time.Time { return time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		panic(err)
	}
	return &http.Client{Transport: handlerTransport{h}}
}

func ExampleRenderer_Render() {
	tpl, err := templates.Load("examples/welcome")
	if err != nil {
		fmt.Println(err)
		return
	}
	r := templates.NewRenderer(templates.RendererConfig{HTTPClient: demoClient()})
	msg, err := r.Render(context.Background(), tpl, templates.RenderData{
		Customer:       map[string]any{"customer_id": "c-42", "first_name": "ada"},
		Campaign:       map[string]any{"id": "spring"},
		UnsubscribeURL: "https://tailor.example/u/abc",
		PreferencesURL: "https://tailor.example/p/abc",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(msg.Subject)
	fmt.Println(msg.Provenance.Template, msg.Provenance.Version, msg.Provenance.Sources["recs"].Outcome)
	// Output:
	// Ada, picked for you
	// welcome 1 fetched
}

func ExampleValidate() {
	rep := templates.Validate("examples/welcome", templates.ValidateConfig{Sample: map[string]any{
		"customer_id": "c-1", "first_name": "Ada", "recently_viewed": []any{map[string]any{"product_id": "p-1", "category": "shoes"}},
	}})
	fmt.Println(len(rep.Errors), "errors,", len(rep.Warnings), "warnings")
	// Output:
	// 0 errors, 0 warnings
}
