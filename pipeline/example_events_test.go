package pipeline_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/tailor-email/tailor/pipeline"
)

func ExampleDecodeEvent() {
	raw := []byte(`{"event_id":" ev-1 ","customer_id":"c-42","type":"purchase","timestamp":"2026-03-10T13:00:00+02:00",
		"properties":{"order_id":"o-9","total":"42.50","currency":"eur"}}`)
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	ev, err := pipeline.DecodeEvent(raw, pipeline.DecodeOptions{Now: now})
	if err != nil {
		panic(err)
	}
	fmt.Println(ev.EventID, ev.Timestamp, ev.Properties.TotalMinor, ev.Properties.Currency)

	_, err = pipeline.DecodeEvent([]byte(`{"event_id":"ev-2","customer_id":"c-42","type":"purchase","timestamp":"2026-03-10T11:00:00Z","properties":{"order_id":"o","total":42.5,"currency":"EUR"}}`), pipeline.DecodeOptions{Now: now})
	var ve *pipeline.ValidationError
	fmt.Println(errors.As(err, &ve), ve.Field)
	// Output:
	// ev-1 2026-03-10 11:00:00 +0000 UTC 4250 EUR
	// true properties.total
}

func ExampleFeatures_Aggregate() {
	t0 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	var f pipeline.Features
	events := []pipeline.Event{
		{EventID: "1", CustomerID: "c", Type: pipeline.TypeProductView, Timestamp: t0, Properties: pipeline.Properties{ProductID: "p1", Category: "shoes"}},
		{EventID: "2", CustomerID: "c", Type: pipeline.TypeAddToCart, Timestamp: t0.Add(time.Minute), Properties: pipeline.Properties{ProductID: "p1", Quantity: 2}},
	}
	fmt.Println(f.Aggregate(events), f.Aggregate(events)) // the second time, every event is a duplicate
	fmt.Println(f.WindowCount(pipeline.TypeProductView, pipeline.Window1h, t0.Add(10*time.Minute)), f.Cart()[0].Quantity, f.Sessions())
	// Output:
	// 2 0
	// 1 2 1
}
