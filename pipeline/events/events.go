package events

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tailor-email/tailor/internal/money"
)

// Event types of schema version 1.
const (
	TypePageView        = "page_view"
	TypeProductView     = "product_view"
	TypeSearch          = "search"
	TypeAddToCart       = "add_to_cart"
	TypeRemoveFromCart  = "remove_from_cart"
	TypePurchase        = "purchase"
	TypeEmailOpen       = "email_open"
	TypeEmailClick      = "email_click"
	TypeEmailSent       = "email_sent"       // a sender's provider accepted the message
	TypeEmailBounced    = "email_bounced"    // refused for the recipient, hard or soft
	TypeEmailComplained = "email_complained" // the recipient reported it as spam
	TypeEmailFailed     = "email_failed"     // it could not be sent as it was
	TypeEmailDeferred   = "email_deferred"   // the provider asked to try again later (a retry)
	TypeEmailSuppressed = "email_suppressed" // held back at claim: the recipient opted out after rendering
	TypeCustom          = "custom"
)

// Types lists every event type the schema accepts, in a stable order.
var Types = []string{
	TypePageView, TypeProductView, TypeSearch, TypeAddToCart, TypeRemoveFromCart,
	TypePurchase, TypeEmailOpen, TypeEmailClick, TypeEmailSent, TypeEmailBounced, TypeEmailComplained,
	TypeEmailFailed, TypeEmailDeferred, TypeEmailSuppressed, TypeCustom,
}

// SchemaVersion is the version of the event contract (Schema).
const SchemaVersion = 1

// Schema is the event contract as a JSON Schema (draft 2020-12). Decode enforces it
// and, beyond what JSON Schema can say, the normalisation rules (UTC, trimmed ids, upper-case
// currency, money as decimal strings or integer minor units) and the timestamp bounds.
//
//go:embed event.schema.json
var Schema []byte

// Limits of the event contract.
const (
	MaxEventBytes     = 32 << 10 // one encoded event
	MaxIDLen          = 128      // event_id, customer_id, anonymous_id, product/order/campaign ids
	MaxStringLen      = 2048     // urls, queries, titles, names, reasons
	MaxProviderIDLen  = 256      // email_sent's provider_id
	MaxPurchaseItems  = 100      // purchase.items
	MaxFutureDefault  = 5 * time.Minute
	MaxAgeDefault     = 90 * 24 * time.Hour
	maxQuantity       = 10000
	maxMinorUnits     = 1e15
	maxCustomDataKeys = 50
)

// Event is one behavioural event, normalised: ids trimmed, Timestamp in UTC, currency
// upper-cased, money in integer minor units. Its JSON form (MarshalJSON) is itself valid input
// to Decode, and is what the producer writes to Kinesis.
type Event struct {
	EventID     string     `json:"event_id"`
	CustomerID  string     `json:"customer_id,omitempty"`
	AnonymousID string     `json:"anonymous_id,omitempty"`
	Type        string     `json:"type"`
	Timestamp   time.Time  `json:"timestamp"`
	Properties  Properties `json:"properties,omitzero"`
}

// ProfileID is the id of the profile the event aggregates into: the customer id, else the
// anonymous id. It is also the Kinesis partition key, so one profile's events stay in order.
func (e *Event) ProfileID() string {
	if e.CustomerID != "" {
		return e.CustomerID
	}
	return e.AnonymousID
}

// Properties are the typed properties of every event type; each type uses a subset (see
// Schema). Money is in minor units of Currency.
type Properties struct {
	URL        string `json:"url,omitempty"`
	Title      string `json:"title,omitempty"`
	Referrer   string `json:"referrer,omitempty"`
	ProductID  string `json:"product_id,omitempty"`
	Category   string `json:"category,omitempty"`
	PriceMinor int64  `json:"price,omitempty"` // written as a decimal string
	Currency   string `json:"currency,omitempty"`
	Quantity   int64  `json:"quantity,omitempty"`
	Query      string `json:"query,omitempty"`
	Results    int64  `json:"results,omitempty"`
	OrderID    string `json:"order_id,omitempty"`
	TotalMinor int64  `json:"total,omitempty"` // written as a decimal string
	Items      []Item `json:"items,omitempty"`
	CampaignID string `json:"campaign_id,omitempty"`
	MessageID  string `json:"message_id,omitempty"`
	ProviderID string `json:"provider_id,omitempty"` // email_sent: the provider's message id
	Bounce     string `json:"bounce,omitempty"`      // email_bounced: hard or soft
	// Reason is the provider's reply (email_bounced, email_deferred) or why (email_failed,
	// email_suppressed), at most MaxStringLen bytes.
	Reason string         `json:"reason,omitempty"`
	Name   string         `json:"name,omitempty"`
	Data   map[string]any `json:"data,omitempty"`
}

// Item is one line of a purchase.
type Item struct {
	ProductID  string `json:"product_id"`
	Category   string `json:"category,omitempty"`
	Quantity   int64  `json:"quantity,omitempty"`
	PriceMinor int64  `json:"price,omitempty"`
}

// ValidationError says why an event was rejected: the field (JSON path, empty for the whole
// payload) and a reason a producer can act on.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// ErrInvalid matches every *ValidationError with errors.Is.
var ErrInvalid = errors.New("invalid event")

// Is makes errors.Is(err, ErrInvalid) true for validation errors.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DecodeOptions bound what Decode accepts. Zero values mean defaults.
type DecodeOptions struct {
	// Now is the reference time for timestamp bounds. Default time.Now().
	Now time.Time
	// MaxFuture is how far ahead of Now a timestamp may be. Default 5 minutes.
	MaxFuture time.Duration
	// MaxAge is how far behind Now a timestamp may be. Default 90 days.
	MaxAge time.Duration
	// MaxBytes bounds the encoded event. Default MaxEventBytes, the contract's limit on what a
	// client sends. The normalised form of an accepted event may be somewhat longer (RFC 3339
	// timestamps for epoch milliseconds, decimal strings for integer money, escaped U+2028),
	// so the stream processor allows a whole Kinesis record.
	MaxBytes int
}

func (o DecodeOptions) withDefaults() DecodeOptions {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.MaxFuture == 0 {
		o.MaxFuture = MaxFutureDefault
	}
	if o.MaxAge == 0 {
		o.MaxAge = MaxAgeDefault
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = MaxEventBytes
	}
	return o
}

// per-type allowed and required properties; the embedded schema says the same (a test checks).
var propertySpec = map[string]struct{ allowed, required []string }{
	TypePageView:        {[]string{"url", "title", "referrer"}, []string{"url"}},
	TypeProductView:     {[]string{"product_id", "category", "price", "currency"}, []string{"product_id"}},
	TypeSearch:          {[]string{"query", "results"}, []string{"query"}},
	TypeAddToCart:       {[]string{"product_id", "category", "price", "currency", "quantity"}, []string{"product_id"}},
	TypeRemoveFromCart:  {[]string{"product_id", "category", "price", "currency", "quantity"}, []string{"product_id"}},
	TypePurchase:        {[]string{"order_id", "total", "currency", "items"}, []string{"order_id", "total", "currency"}},
	TypeEmailOpen:       {[]string{"campaign_id", "message_id"}, []string{"campaign_id"}},
	TypeEmailClick:      {[]string{"campaign_id", "message_id", "url"}, []string{"campaign_id"}},
	TypeEmailSent:       {[]string{"campaign_id", "message_id", "provider_id"}, []string{"campaign_id"}},
	TypeEmailBounced:    {[]string{"campaign_id", "message_id", "bounce", "reason"}, []string{"campaign_id"}},
	TypeEmailComplained: {[]string{"campaign_id", "message_id"}, []string{"campaign_id"}},
	TypeEmailFailed:     {[]string{"campaign_id", "message_id", "reason"}, []string{"campaign_id"}},
	TypeEmailDeferred:   {[]string{"campaign_id", "message_id", "reason"}, []string{"campaign_id"}},
	TypeEmailSuppressed: {[]string{"campaign_id", "message_id", "reason"}, []string{"campaign_id", "reason"}},
	TypeCustom:          {[]string{"name", "data"}, []string{"name"}},
}

var topLevel = []string{"event_id", "customer_id", "anonymous_id", "type", "timestamp", "properties", "schema_version"}

// Decode parses and validates one JSON event and returns it normalised. Every rejection
// is a *ValidationError naming the field and the reason.
func Decode(raw []byte, opts DecodeOptions) (Event, error) {
	opts = opts.withDefaults()
	var ev Event
	if len(raw) > opts.MaxBytes {
		return ev, invalid("", "event is %d bytes, the limit is %d", len(raw), opts.MaxBytes)
	}
	if !utf8.Valid(raw) {
		return ev, invalid("", "payload is not valid UTF-8")
	}
	var obj map[string]json.RawMessage
	if err := strictUnmarshal(raw, &obj); err != nil {
		return ev, invalid("", "malformed JSON: %s", jsonReason(err))
	}
	if obj == nil {
		return ev, invalid("", "an event must be a JSON object")
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(topLevel, k) {
			return ev, invalid(k, "unknown field")
		}
	}
	if v, ok := obj["schema_version"]; ok {
		n, err := intField(v, "schema_version")
		if err != nil {
			return ev, err
		}
		if n != SchemaVersion {
			return ev, invalid("schema_version", "unsupported version %d (this server accepts %d)", n, SchemaVersion)
		}
	}
	var err error
	if ev.EventID, err = idField(obj, "event_id", true); err != nil {
		return ev, err
	}
	if ev.CustomerID, err = idField(obj, "customer_id", false); err != nil {
		return ev, err
	}
	if ev.AnonymousID, err = idField(obj, "anonymous_id", false); err != nil {
		return ev, err
	}
	if ev.CustomerID == "" && ev.AnonymousID == "" {
		return ev, invalid("customer_id", "required (or anonymous_id)")
	}
	typ, ok := obj["type"]
	if !ok {
		return ev, invalid("type", "required")
	}
	if ev.Type, err = stringField(typ, "type", 64); err != nil {
		return ev, err
	}
	ev.Type = strings.TrimSpace(ev.Type)
	spec, ok := propertySpec[ev.Type]
	if !ok {
		return ev, invalid("type", "unknown event type %q (one of %s)", ev.Type, strings.Join(Types, ", "))
	}
	ts, ok := obj["timestamp"]
	if !ok {
		return ev, invalid("timestamp", "required")
	}
	if ev.Timestamp, err = timestampField(ts, opts); err != nil {
		return ev, err
	}
	props := map[string]json.RawMessage{}
	if p, ok := obj["properties"]; ok && !isNull(p) {
		if err := strictUnmarshal(p, &props); err != nil || props == nil {
			return ev, invalid("properties", "must be an object")
		}
	}
	if ev.Properties, err = decodeProperties(props, spec.allowed, spec.required); err != nil {
		return ev, err
	}
	return ev, nil
}

func decodeProperties(obj map[string]json.RawMessage, allowed, required []string) (Properties, error) {
	var p Properties
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(allowed, k) {
			return p, invalid("properties."+k, "unknown property for this event type (allowed: %s)", strings.Join(allowed, ", "))
		}
	}
	for _, k := range required {
		if v, ok := obj[k]; !ok || isNull(v) {
			return p, invalid("properties."+k, "required")
		}
	}
	var err error
	str := func(k string, limit int) string {
		v, ok := obj[k]
		if !ok || err != nil || isNull(v) {
			return ""
		}
		var s string
		s, err = stringField(v, "properties."+k, limit)
		s = strings.TrimSpace(s)
		if err == nil && s == "" && slices.Contains(required, k) {
			err = invalid("properties."+k, "must not be empty")
		}
		return s
	}
	p.URL = str("url", MaxStringLen)
	p.Title = str("title", MaxStringLen)
	p.Referrer = str("referrer", MaxStringLen)
	p.ProductID = str("product_id", MaxIDLen)
	p.Category = str("category", 256)
	p.Query = str("query", MaxStringLen)
	p.OrderID = str("order_id", MaxIDLen)
	p.CampaignID = str("campaign_id", MaxIDLen)
	p.MessageID = str("message_id", MaxIDLen)
	p.ProviderID = str("provider_id", MaxProviderIDLen)
	p.Bounce = str("bounce", 4)
	p.Reason = str("reason", MaxStringLen)
	p.Name = str("name", 256)
	p.Currency = strings.ToUpper(str("currency", 3))
	if err != nil {
		return p, err
	}
	if p.Bounce != "" && p.Bounce != "hard" && p.Bounce != "soft" {
		return p, invalid("properties.bounce", "must be hard or soft, got %q", p.Bounce)
	}
	if p.Currency != "" && !money.Valid(p.Currency) {
		return p, invalid("properties.currency", "must be an ISO 4217 code like EUR, got %q", p.Currency)
	}
	if v, ok := obj["quantity"]; ok && !isNull(v) {
		if p.Quantity, err = intField(v, "properties.quantity"); err != nil {
			return p, err
		}
		if p.Quantity < 1 || p.Quantity > maxQuantity {
			return p, invalid("properties.quantity", "must be between 1 and %d", maxQuantity)
		}
	}
	if v, ok := obj["results"]; ok && !isNull(v) {
		if p.Results, err = intField(v, "properties.results"); err != nil {
			return p, err
		}
		if p.Results < 0 {
			return p, invalid("properties.results", "must not be negative")
		}
	}
	for _, m := range []struct {
		key string
		dst *int64
	}{{"price", &p.PriceMinor}, {"total", &p.TotalMinor}} {
		v, ok := obj[m.key]
		if !ok || isNull(v) {
			continue
		}
		if p.Currency == "" {
			return p, invalid("properties.currency", "required with properties.%s", m.key)
		}
		if *m.dst, err = moneyField(v, "properties."+m.key, p.Currency); err != nil {
			return p, err
		}
	}
	if v, ok := obj["items"]; ok && !isNull(v) {
		var items []json.RawMessage
		if err := strictUnmarshal(v, &items); err != nil {
			return p, invalid("properties.items", "must be an array of objects")
		}
		if len(items) > MaxPurchaseItems {
			return p, invalid("properties.items", "%d items, the limit is %d", len(items), MaxPurchaseItems)
		}
		for i, raw := range items {
			var io map[string]json.RawMessage
			field := "properties.items[" + strconv.Itoa(i) + "]"
			if err := strictUnmarshal(raw, &io); err != nil || io == nil {
				return p, invalid(field, "must be an object")
			}
			price, hasPrice := io["price"]
			delete(io, "price") // in the order's currency, parsed below
			sub, err := decodeProperties(io, []string{"product_id", "category", "quantity"}, []string{"product_id"})
			if err != nil {
				var ve *ValidationError
				if errors.As(err, &ve) {
					ve.Field = strings.Replace(ve.Field, "properties", field, 1)
				}
				return p, err
			}
			if hasPrice && !isNull(price) {
				if sub.PriceMinor, err = moneyField(price, field+".price", p.Currency); err != nil {
					return p, err
				}
			}
			p.Items = append(p.Items, Item{ProductID: sub.ProductID, Category: sub.Category, Quantity: max(sub.Quantity, 1), PriceMinor: sub.PriceMinor})
		}
	}
	if v, ok := obj["data"]; ok && !isNull(v) {
		if err := strictUnmarshal(v, &p.Data); err != nil || p.Data == nil {
			return p, invalid("properties.data", "must be an object")
		}
		if len(p.Data) > maxCustomDataKeys {
			return p, invalid("properties.data", "%d keys, the limit is %d", len(p.Data), maxCustomDataKeys)
		}
	}
	return p, nil
}

// strictUnmarshal decodes with numbers kept as json.Number and no trailing data.
func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err == nil {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "expected a JSON object, got " + te.Value
	}
	if errors.Is(err, io.EOF) {
		return "empty payload"
	}
	return err.Error()
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func jsonKind(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func stringField(raw json.RawMessage, field string, limit int) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalid(field, "must be a string, got %s", jsonKind(raw))
	}
	if len(s) > limit {
		return "", invalid(field, "%d bytes, the limit is %d", len(s), limit)
	}
	return s, nil
}

func idField(obj map[string]json.RawMessage, field string, required bool) (string, error) {
	raw, ok := obj[field]
	if !ok || isNull(raw) {
		if required {
			return "", invalid(field, "required")
		}
		return "", nil
	}
	s, err := stringField(raw, field, 4*MaxIDLen)
	if err != nil {
		return "", err
	}
	s = strings.TrimSpace(s)
	switch {
	case s == "" && required:
		return "", invalid(field, "must not be empty")
	case len(s) > MaxIDLen:
		return "", invalid(field, "%d bytes, the limit is %d", len(s), MaxIDLen)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", invalid(field, "must not contain control characters")
	}
	return s, nil
}

func intField(raw json.RawMessage, field string) (int64, error) {
	if jsonKind(raw) != "a number" {
		return 0, invalid(field, "must be an integer, got %s", jsonKind(raw))
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		return 0, invalid(field, "must be an integer, got %s", bytes.TrimSpace(raw))
	}
	return n, nil
}

// timestampField accepts RFC 3339 strings (any offset) and integer epoch milliseconds.
func timestampField(raw json.RawMessage, opts DecodeOptions) (time.Time, error) {
	var t time.Time
	switch jsonKind(raw) {
	case "a string":
		s, _ := stringField(raw, "timestamp", 64)
		var err error
		if t, err = time.Parse(time.RFC3339Nano, strings.TrimSpace(s)); err != nil {
			return t, invalid("timestamp", "must be RFC 3339 (2026-01-02T15:04:05Z) or epoch milliseconds, got %q", s)
		}
	case "a number":
		ms, err := intField(raw, "timestamp")
		if err != nil {
			return t, invalid("timestamp", "epoch milliseconds must be an integer")
		}
		if ms < 1e11 {
			return t, invalid("timestamp", "epoch milliseconds expected, %d looks like seconds", ms)
		}
		t = time.UnixMilli(ms)
	default:
		return t, invalid("timestamp", "must be an RFC 3339 string or epoch milliseconds, got %s", jsonKind(raw))
	}
	t = t.UTC()
	if t.After(opts.Now.Add(opts.MaxFuture)) {
		return t, invalid("timestamp", "%s is in the future (more than %s ahead)", t.Format(time.RFC3339), opts.MaxFuture)
	}
	if t.Before(opts.Now.Add(-opts.MaxAge)) {
		return t, invalid("timestamp", "%s is older than %s", t.Format(time.RFC3339), opts.MaxAge)
	}
	return t, nil
}

// moneyField accepts a decimal string in major units ("19.99") or an integer in minor units
// (1999), never a JSON float: binary floating point cannot hold money exactly.
func moneyField(raw json.RawMessage, field, currency string) (int64, error) {
	switch jsonKind(raw) {
	case "a number":
		n, err := intField(raw, field)
		if err != nil {
			return 0, invalid(field, "a number must be integer minor units (1999 for 19.99); use a decimal string for major units")
		}
		if n < 0 || n > maxMinorUnits {
			return 0, invalid(field, "out of range")
		}
		return n, nil
	case "a string":
		s, _ := stringField(raw, field, 32)
		return parseDecimal(strings.TrimSpace(s), currency, field)
	default:
		return 0, invalid(field, "must be a decimal string or integer minor units, got %s", jsonKind(raw))
	}
}

func parseDecimal(s, currency, field string) (int64, error) {
	if strings.HasPrefix(s, "-") {
		return 0, invalid(field, "must not be negative, got %q", s)
	}
	n, err := money.ParseMajor(s, currency)
	switch {
	case errors.Is(err, money.ErrTooPrecise):
		digits, _ := money.Digits(currency)
		return 0, invalid(field, "%q has more than %d decimal places (%s)", s, digits, currency)
	case errors.Is(err, money.ErrRange):
		return 0, invalid(field, "out of range")
	case err != nil:
		return 0, invalid(field, "must be a non-negative decimal like \"19.99\", got %q", s)
	case n > maxMinorUnits:
		return 0, invalid(field, "out of range")
	}
	return n, nil
}

// MarshalJSON writes the normalised event: RFC 3339 UTC timestamp, money as decimal strings.
// It does not escape <, > and & (as json.Marshal would, six bytes for one), so the normalised
// form stays about the size of what the client sent.
func (e Event) MarshalJSON() ([]byte, error) {
	type item struct {
		ProductID string `json:"product_id"`
		Category  string `json:"category,omitempty"`
		Quantity  int64  `json:"quantity,omitempty"`
		Price     string `json:"price,omitempty"`
	}
	type props struct {
		Properties
		PriceMinor string `json:"price,omitempty"`
		TotalMinor string `json:"total,omitempty"`
		Items      []item `json:"items,omitempty"`
	}
	p := props{Properties: e.Properties}
	p.Properties.Items = nil
	if e.Properties.PriceMinor != 0 {
		p.PriceMinor = money.FormatMinor(e.Properties.PriceMinor, e.Properties.Currency)
	}
	if e.Properties.TotalMinor != 0 || e.Type == TypePurchase {
		p.TotalMinor = money.FormatMinor(e.Properties.TotalMinor, e.Properties.Currency)
	}
	for _, it := range e.Properties.Items {
		i := item{ProductID: it.ProductID, Category: it.Category, Quantity: it.Quantity}
		if it.PriceMinor != 0 {
			i.Price = money.FormatMinor(it.PriceMinor, e.Properties.Currency)
		}
		p.Items = append(p.Items, i)
	}
	type plain struct {
		EventID     string `json:"event_id"`
		CustomerID  string `json:"customer_id,omitempty"`
		AnonymousID string `json:"anonymous_id,omitempty"`
		Type        string `json:"type"`
		Timestamp   string `json:"timestamp"`
		Properties  props  `json:"properties"`
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(plain{
		EventID: e.EventID, CustomerID: e.CustomerID, AnonymousID: e.AnonymousID, Type: e.Type,
		Timestamp: e.Timestamp.UTC().Format(time.RFC3339Nano), Properties: p,
	}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
