package profile_test

import (
	"fmt"
	"time"

	"github.com/tailor-email/tailor/pipeline/events"
	"github.com/tailor-email/tailor/pipeline/profile"
)

func ExampleFeatures_Aggregate() {
	t0 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	var f profile.Features
	evs := []events.Event{
		{EventID: "1", CustomerID: "c", Type: events.TypeProductView, Timestamp: t0, Properties: events.Properties{ProductID: "p1", Category: "shoes"}},
		{EventID: "2", CustomerID: "c", Type: events.TypeAddToCart, Timestamp: t0.Add(time.Minute), Properties: events.Properties{ProductID: "p1", Quantity: 2}},
	}
	fmt.Println(f.Aggregate(evs), f.Aggregate(evs)) // the second time, every event is a duplicate
	fmt.Println(f.WindowCount(events.TypeProductView, profile.Window1h, t0.Add(10*time.Minute)), f.Cart()[0].Quantity, f.Sessions())
	// Output:
	// 2 0
	// 1 2 1
}
