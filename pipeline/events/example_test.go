package events_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/tailor-email/tailor/pipeline/events"
)

func ExampleDecode() {
	raw := []byte(`{"event_id":" ev-1 ","customer_id":"c-42","type":"purchase","timestamp":"2026-03-10T13:00:00+02:00",
		"properties":{"order_id":"o-9","total":"42.50","currency":"eur"}}`)
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	ev, err := events.Decode(raw, events.DecodeOptions{Now: now})
	if err != nil {
		panic(err)
	}
	fmt.Println(ev.EventID, ev.Timestamp, ev.Properties.TotalMinor, ev.Properties.Currency)

	_, err = events.Decode([]byte(`{"event_id":"ev-2","customer_id":"c-42","type":"purchase","timestamp":"2026-03-10T11:00:00Z","properties":{"order_id":"o","total":42.5,"currency":"EUR"}}`), events.DecodeOptions{Now: now})
	var ve *events.ValidationError
	fmt.Println(errors.As(err, &ve), ve.Field)
	// Output:
	// ev-1 2026-03-10 11:00:00 +0000 UTC 4250 EUR
	// true properties.total
}
