package events

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var decodeNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func TestDecode_Normalises(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want Event
	}{{
		name: "offset timestamp to UTC, ids trimmed, currency upper-cased, decimal price",
		raw:  `{"event_id":" e1 ","customer_id":" c1\t","type":"product_view","timestamp":"2026-03-10T13:30:00+02:00","properties":{"product_id":" p1 ","price":"19.9","currency":"eur"}}`,
		want: Event{EventID: "e1", CustomerID: "c1", Type: TypeProductView, Timestamp: time.Date(2026, 3, 10, 11, 30, 0, 0, time.UTC),
			Properties: Properties{ProductID: "p1", PriceMinor: 1990, Currency: "EUR"}},
	}, {
		name: "epoch milliseconds, integer minor units, anonymous id",
		raw:  `{"event_id":"e2","anonymous_id":"anon-9","type":"purchase","timestamp":1773140400000,"properties":{"order_id":"o1","total":4250,"currency":"USD","items":[{"product_id":"p1","quantity":2,"price":"10.00"}]}}`,
		want: Event{EventID: "e2", AnonymousID: "anon-9", Type: TypePurchase, Timestamp: time.UnixMilli(1773140400000).UTC(),
			Properties: Properties{OrderID: "o1", TotalMinor: 4250, Currency: "USD", Items: []Item{{ProductID: "p1", Quantity: 2, PriceMinor: 1000}}}},
	}, {
		name: "zero-decimal currency",
		raw:  `{"event_id":"e3","customer_id":"c","type":"add_to_cart","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p","price":"1500","currency":"JPY","quantity":3}}`,
		want: Event{EventID: "e3", CustomerID: "c", Type: TypeAddToCart, Timestamp: time.Date(2026, 3, 10, 11, 0, 0, 0, time.UTC),
			Properties: Properties{ProductID: "p", PriceMinor: 1500, Currency: "JPY", Quantity: 3}},
	}, {
		name: "a sender's outcome with its detail",
		raw:  `{"event_id":"msg-7-1-bounced","customer_id":"c","type":"email_bounced","timestamp":"2026-03-10T11:00:00Z","properties":{"campaign_id":"3","message_id":"7","bounce":"hard","reason":" 550 5.1.1 user unknown "}}`,
		want: Event{EventID: "msg-7-1-bounced", CustomerID: "c", Type: TypeEmailBounced, Timestamp: time.Date(2026, 3, 10, 11, 0, 0, 0, time.UTC),
			Properties: Properties{CampaignID: "3", MessageID: "7", Bounce: "hard", Reason: "550 5.1.1 user unknown"}},
	}, {
		name: "a message held back at claim",
		raw:  `{"event_id":"msg-8-1-suppressed","customer_id":"c","type":"email_suppressed","timestamp":"2026-03-10T11:00:00Z","properties":{"campaign_id":"3","message_id":"8","reason":"unsubscribed"}}`,
		want: Event{EventID: "msg-8-1-suppressed", CustomerID: "c", Type: TypeEmailSuppressed, Timestamp: time.Date(2026, 3, 10, 11, 0, 0, 0, time.UTC),
			Properties: Properties{CampaignID: "3", MessageID: "8", Reason: "unsubscribed"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.raw), DecodeOptions{Now: decodeNow})
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			// The normalised form is valid input that decodes to the same event.
			enc, err := json.Marshal(got)
			require.NoError(t, err)
			again, err := Decode(enc, DecodeOptions{Now: decodeNow})
			require.NoError(t, err, "%s", enc)
			require.Equal(t, got, again)
		})
	}
}

func TestDecode_RejectsMalformedInputWithAReason(t *testing.T) {
	t.Parallel()
	valid := `{"event_id":"e1","customer_id":"c1","type":"product_view","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p1"}}`
	with := func(old, new string) string { return strings.Replace(valid, old, new, 1) }
	tests := []struct {
		name, raw, field, reason string
	}{
		{"bad JSON", `{"event_id":"e1",`, "", "malformed JSON"},
		{"not an object", `[1,2]`, "", "malformed JSON"},
		{"trailing data", valid + `{}`, "", "trailing data"},
		{"empty", ``, "", "malformed JSON: empty payload"},
		{"only whitespace", "  \n", "", "malformed JSON: empty payload"},
		{"missing event_id", with(`"event_id":"e1",`, ""), "event_id", "required"},
		{"blank event_id", with(`"e1"`, `"  "`), "event_id", "must not be empty"},
		{"missing customer", with(`"customer_id":"c1",`, ""), "customer_id", "required (or anonymous_id)"},
		{"missing type", with(`"type":"product_view",`, ""), "type", "required"},
		{"missing timestamp", with(`"timestamp":"2026-03-10T11:00:00Z",`, ""), "timestamp", "required"},
		{"missing required property", with(`"product_id":"p1"`, `"category":"x"`), "properties.product_id", "required"},
		{"event_id of wrong type", with(`"e1"`, `42`), "event_id", "must be a string, got a number"},
		{"timestamp of wrong type", with(`"2026-03-10T11:00:00Z"`, `true`), "timestamp", "got a boolean"},
		{"timestamp not RFC 3339", with(`2026-03-10T11:00:00Z`, `10/03/2026`), "timestamp", "must be RFC 3339"},
		{"epoch seconds", with(`"2026-03-10T11:00:00Z"`, `1773140400`), "timestamp", "looks like seconds"},
		{"quantity as string", with(`"type":"product_view"`, `"type":"add_to_cart"`)[:0] + `{"event_id":"e","customer_id":"c","type":"add_to_cart","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p","quantity":"2"}}`, "properties.quantity", "must be an integer"},
		{"float money", `{"event_id":"e","customer_id":"c","type":"product_view","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p","price":19.99,"currency":"EUR"}}`, "properties.price", "integer minor units"},
		{"money without currency", `{"event_id":"e","customer_id":"c","type":"product_view","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p","price":"19.99"}}`, "properties.currency", "required with properties.price"},
		{"too many decimals", `{"event_id":"e","customer_id":"c","type":"product_view","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p","price":"19.999","currency":"EUR"}}`, "properties.price", "more than 2 decimal places"},
		{"bad currency", `{"event_id":"e","customer_id":"c","type":"product_view","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p","price":"1","currency":"E1"}}`, "properties.currency", "ISO 4217"},
		{"properties not an object", with(`{"product_id":"p1"}`, `"p1"`), "properties", "must be an object"},
		{"unknown type", with(`"product_view"`, `"product_veiw"`), "type", `unknown event type "product_veiw"`},
		{"unknown field", with(`"type"`, `"typo":1,"type"`), "typo", "unknown field"},
		{"bounce neither hard nor soft", `{"event_id":"e","customer_id":"c","type":"email_bounced","timestamp":"2026-03-10T11:00:00Z","properties":{"campaign_id":"1","bounce":"mild"}}`, "properties.bounce", "must be hard or soft"},
		{"suppression without a reason", `{"event_id":"e","customer_id":"c","type":"email_suppressed","timestamp":"2026-03-10T11:00:00Z","properties":{"campaign_id":"1"}}`, "properties.reason", "required"},
		{"bounce detail on a send", `{"event_id":"e","customer_id":"c","type":"email_sent","timestamp":"2026-03-10T11:00:00Z","properties":{"campaign_id":"1","bounce":"hard"}}`, "properties.bounce", "unknown property"},
		{"unknown property", with(`"product_id":"p1"`, `"product_id":"p1","colour":"red"`), "properties.colour", "unknown property"},
		{"1 MB property", with(`"product_id":"p1"`, `"product_id":"p1","category":"`+strings.Repeat("x", 1<<20)+`"`), "", "the limit is 32768"},
		{"long id", with(`"c1"`, `"`+strings.Repeat("c", 200)+`"`), "customer_id", "the limit is 128"},
		{"future timestamp", with(`2026-03-10T11:00:00Z`, `2026-03-10T13:00:00Z`), "timestamp", "in the future"},
		{"ancient timestamp", with(`2026-03-10T11:00:00Z`, `1999-01-01T00:00:00Z`), "timestamp", "is older than"},
		{"non-UTF-8 bytes", with(`"p1"`, "\"p\xff\xfe1\""), "", "not valid UTF-8"},
		{"control character in id", with(`"c1"`, `"c\u00011"`), "customer_id", "control characters"},
		{"unsupported schema version", with(`"type"`, `"schema_version":2,"type"`), "schema_version", "unsupported version 2"},
		{"too many items", `{"event_id":"e","customer_id":"c","type":"purchase","timestamp":"2026-03-10T11:00:00Z","properties":{"order_id":"o","total":"1","currency":"EUR","items":[` + strings.Repeat(`{"product_id":"p"},`, 100) + `{"product_id":"p"}]}}`, "properties.items", "101 items"},
		{"item without product", `{"event_id":"e","customer_id":"c","type":"purchase","timestamp":"2026-03-10T11:00:00Z","properties":{"order_id":"o","total":"1","currency":"EUR","items":[{"quantity":1}]}}`, "properties.items[0].product_id", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.raw), DecodeOptions{Now: decodeNow})
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalid)
			var ve *ValidationError
			require.True(t, errors.As(err, &ve))
			require.Equal(t, tt.field, ve.Field, "reason: %s", ve.Reason)
			require.Contains(t, ve.Reason, tt.reason)
		})
	}
}

func TestEventSchema_AgreesWithTheDecoder(t *testing.T) {
	t.Parallel()
	var schema struct {
		Required   []string `json:"required"`
		Properties struct {
			Type struct {
				Enum []string `json:"enum"`
			} `json:"type"`
		} `json:"properties"`
		AllOf []struct {
			If struct {
				Properties struct {
					Type struct {
						Const string `json:"const"`
					} `json:"type"`
				} `json:"properties"`
			} `json:"if"`
			Then struct {
				Properties struct {
					Properties struct {
						Required   []string                   `json:"required"`
						Properties map[string]json.RawMessage `json:"properties"`
					} `json:"properties"`
				} `json:"properties"`
			} `json:"then"`
		} `json:"allOf"`
	}
	require.NoError(t, json.Unmarshal(Schema, &schema))
	require.Equal(t, Types, schema.Properties.Type.Enum)
	require.Subset(t, schema.Required, []string{"event_id", "type", "timestamp"})
	require.Len(t, schema.AllOf, len(Types))
	for _, rule := range schema.AllOf {
		typ := rule.If.Properties.Type.Const
		spec, ok := propertySpec[typ]
		require.True(t, ok, typ)
		p := rule.Then.Properties.Properties
		require.ElementsMatch(t, spec.allowed, slices.Collect(maps.Keys(p.Properties)), "%s properties", typ)
		require.ElementsMatch(t, spec.required, p.Required, "%s required", typ)
	}
}

func TestSplitBatch(t *testing.T) {
	t.Parallel()
	raws, err := SplitBatch([]byte(` [{"a":1}, {"b":2}] `))
	require.NoError(t, err)
	require.Len(t, raws, 2)
	raws, err = SplitBatch([]byte(`{"a":1}`))
	require.NoError(t, err)
	require.Len(t, raws, 1)
	raws, err = SplitBatch([]byte("{bad\n{\"a\":1}\n\n  {\"b\":2}\r\n"))
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte(`{bad`), []byte(`{"a":1}`), []byte(`{"b":2}`)}, raws, "NDJSON: one event per line, bad lines rejected one by one")
	raws, err = SplitBatch([]byte("{\n  \"a\": 1\n}\n"))
	require.NoError(t, err)
	require.Len(t, raws, 1, "a pretty-printed object is one event")
	_, err = SplitBatch([]byte(strings.Repeat("{}\n", MaxBatchEvents+1)))
	require.ErrorContains(t, err, "the limit is 500")
	_, err = SplitBatch([]byte(`[` + strings.Repeat(`{},`, MaxBatchEvents) + `{}]`))
	require.ErrorContains(t, err, "the limit is 500")
	_, err = SplitBatch([]byte(`"x"`))
	require.ErrorIs(t, err, ErrInvalid)
	_, err = SplitBatch([]byte(`[{"a":`))
	require.ErrorContains(t, err, "malformed JSON")
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"event_id":"e1","customer_id":"c1","type":"product_view","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p1","price":"1.5","currency":"eur"}}`))
	f.Add([]byte(`{"event_id":"e2","anonymous_id":"a","type":"purchase","timestamp":1773140400000,"properties":{"order_id":"o","total":12,"currency":"JPY","items":[{"product_id":"p","price":"3"}]}}`))
	f.Add([]byte(`{"event_id":"e3","customer_id":"c","type":"custom","timestamp":"2026-03-10T11:00:00+05:30","properties":{"name":"n","data":{"k":[1,2,{"x":null}]}}}`))
	f.Add([]byte(`{"event_id":"e4","customer_id":"c","type":"remove_from_cart","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p","quantity":1}}`))
	f.Add([]byte("{\"event_id\":\"\xff\"}"))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := Decode(raw, DecodeOptions{Now: decodeNow})
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Reason == "" {
				t.Fatalf("rejection without a reason: %v", err)
			}
			return
		}
		if ev.EventID == "" || ev.ProfileID() == "" || ev.Timestamp.Location() != time.UTC {
			t.Fatalf("accepted an event that breaks the contract: %+v", ev)
		}
		rec, err := Record(ev)
		if err != nil {
			t.Fatalf("encode accepted event: %v", err)
		}
		// Read back as the stream processor does: the normalised form may be a little longer.
		again, err := Decode(rec.Data, DecodeOptions{Now: decodeNow, MaxBytes: streamDecode.MaxBytes})
		if err != nil {
			t.Fatalf("normalised form %s rejected: %v", rec.Data, err)
		}
		if !again.Timestamp.Equal(ev.Timestamp) || again.EventID != ev.EventID || again.Properties.PriceMinor != ev.Properties.PriceMinor || again.Properties.TotalMinor != ev.Properties.TotalMinor {
			t.Fatalf("round trip changed the event: %+v != %+v", again, ev)
		}
	})
}

func TestDecode_MoneyFollowsEachCurrencysMinorUnits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		currency, price string
		minor           int64
		reason          string
	}{
		{"EUR", `"19.99"`, 1999, ""}, {"USD", `"0.5"`, 50, ""}, {"KWD", `"1.999"`, 1999, ""}, {"BHD", `"12.345"`, 12345, ""},
		{"JPY", `"1999"`, 1999, ""}, {"CLP", `"5"`, 5, ""}, {"ISK", `"120"`, 120, ""}, {"KWD", `1999`, 1999, ""},
		{"JPY", `"19.99"`, 0, "more than 0 decimal places (JPY)"}, {"EUR", `"1.999"`, 0, "more than 2 decimal places (EUR)"},
		{"KWD", `"1.9999"`, 0, "more than 3 decimal places"}, {"EUR", `"-1.00"`, 0, "must not be negative"},
		{"ZZZ", `"1"`, 0, "ISO 4217"}, {"EUR", `"1,50"`, 0, `decimal like "19.99"`},
	} {
		raw := `{"event_id":"m","customer_id":"c","type":"product_view","timestamp":"2026-03-10T11:00:00Z","properties":{"product_id":"p","price":` + tc.price + `,"currency":"` + strings.ToLower(tc.currency) + `"}}`
		ev, err := Decode([]byte(raw), DecodeOptions{Now: decodeNow})
		if tc.reason != "" {
			require.ErrorContains(t, err, tc.reason, "%s %s", tc.price, tc.currency)
			continue
		}
		require.NoError(t, err, "%s %s", tc.price, tc.currency)
		require.Equal(t, tc.minor, ev.Properties.PriceMinor, "%s %s", tc.price, tc.currency)
		require.Equal(t, tc.currency, ev.Properties.Currency)
		enc, err := ev.MarshalJSON()
		require.NoError(t, err)
		back, err := Decode(enc, DecodeOptions{Now: decodeNow})
		require.NoError(t, err)
		require.Equal(t, tc.minor, back.Properties.PriceMinor, "the normalised form keeps the amount: %s", enc)
	}
}
