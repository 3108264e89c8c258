package profile

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The profile item's attributes: the one place their names are written down. Every other part
// of Tailor reads a profile through Decode and Fields, and writes it through Store and Writer.
//
//	customer_id                       S   the key
//	email first_name last_name
//	locale timezone country           S   known customers columns
//	created_at crm_updated_at         S   customers.created_at / updated_at, RFC 3339 UTC
//	attributes                        M   customers.attributes (jsonb)
//	crm_col_<column>                  *   every other customers column
//	crm_lsn                           N   version of the customers row (guards the above)
//	subscriptions                     M   topic -> {status, source, updated_at, lsn[, deleted]}
//	consents                          M   purpose -> {granted, source, at, lsn[, deleted]}
//	subscriptions_lsn consents_lsn    N   floors raised by erasure and TRUNCATE
//	ev_version                        N   version of ev_state (guards it)
//	ev_state                          B   Features as JSON, DEFLATE-compressed
//	erased_at                         S   set by erasure: nothing is aggregated any more
//	updated_at                        S   last CRM or preference write
const (
	AttrID               = "customer_id"
	attrEmail            = "email"
	attrFirstName        = "first_name"
	attrLastName         = "last_name"
	attrLocale           = "locale"
	attrTimezone         = "timezone"
	attrCountry          = "country"
	attrCreatedAt        = "created_at"
	attrCRMUpdatedAt     = "crm_updated_at"
	attrAttributes       = "attributes"
	attrColumnPrefix     = "crm_col_"
	attrCRMLSN           = "crm_lsn"
	attrSubscriptions    = "subscriptions"
	attrConsents         = "consents"
	attrSubscriptionsLSN = "subscriptions_lsn"
	attrConsentsLSN      = "consents_lsn"
	attrEventVersion     = "ev_version"
	attrEventState       = "ev_state"
	attrErasedAt         = "erased_at"
	attrUpdatedAt        = "updated_at"
	entryLSN             = "lsn"
	entryDeleted         = "deleted"
)

// Bounds that keep a profile item far below DynamoDB's 400 KB: the CRM part (attributes and
// other columns, encoded) and the entries per preference map. Writes beyond them are refused
// (ErrWriteRefused) with the bound in the message. Features are bounded by construction
// (RecentlyViewedMax, SessionsKeptMax, CartEventsMax, AffinityMax, CurrenciesMax, RecentIDsMax).
const (
	MaxCRMBytes       = 64 << 10
	MaxEntriesPerMap  = 200
	MaxEntryKeyLen    = 128
	maxStateBytes     = 4 << 20 // inflated ev_state, against a corrupt or hostile value
	timeLayout        = time.RFC3339Nano
	stateDeflate      = 0x01 // marks a DEFLATE-compressed ev_state; '{' starts plain JSON
	customersIDColumn = "id"
)

// crmColumns maps the known customers columns to their attributes.
var crmColumns = map[string]string{
	"email": attrEmail, "first_name": attrFirstName, "last_name": attrLastName, "locale": attrLocale,
	"timezone": attrTimezone, "country": attrCountry, "created_at": attrCreatedAt, "updated_at": attrCRMUpdatedAt,
	"attributes": attrAttributes,
}

// ColumnAttribute is the profile attribute a customers column is stored in: a known column's
// own attribute, crm_col_<column> for any other. The id column is the key and has none ("").
func ColumnAttribute(column string) string {
	if column == customersIDColumn {
		return ""
	}
	if a, ok := crmColumns[column]; ok {
		return a
	}
	return attrColumnPrefix + column
}

// EntryKind names a preference map: the child tables of customers that CDC carries.
type EntryKind string

// The preference maps.
const (
	Subscriptions EntryKind = attrSubscriptions
	Consents      EntryKind = attrConsents
)

func (k EntryKind) floor() string { return string(k) + "_lsn" }

func (k EntryKind) valid() bool { return k == Subscriptions || k == Consents }

// ErrDecode marks an item that is not a valid profile.
var ErrDecode = errors.New("profile: cannot decode item")

func decodeErr(attr string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrDecode, attr, err)
}

// Decode reads a profile item. Attributes it does not know are ignored; a known attribute of
// the wrong type is an error wrapping ErrDecode.
func Decode(item map[string]types.AttributeValue) (*Profile, error) {
	p := &Profile{}
	var err error
	str := func(attr string) string {
		if err != nil {
			return ""
		}
		v, ok := item[attr]
		if !ok {
			return ""
		}
		s, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			err = decodeErr(attr, fmt.Errorf("want a string, got %T", v))
			return ""
		}
		return s.Value
	}
	tm := func(attr string) time.Time {
		s := str(attr)
		if s == "" || err != nil {
			return time.Time{}
		}
		t, perr := time.Parse(timeLayout, s)
		if perr != nil {
			err = decodeErr(attr, perr)
		}
		return t
	}
	p.ID = str(AttrID)
	p.CRM = CRM{
		Email: str(attrEmail), FirstName: str(attrFirstName), LastName: str(attrLastName),
		Locale: str(attrLocale), Timezone: str(attrTimezone), Country: str(attrCountry),
		CreatedAt: tm(attrCreatedAt), UpdatedAt: tm(attrCRMUpdatedAt),
	}
	p.ErasedAt, p.UpdatedAt = tm(attrErasedAt), tm(attrUpdatedAt)
	if err != nil {
		return nil, err
	}
	if p.CRMVersion, err = number(item, attrCRMLSN); err != nil {
		return nil, err
	}
	if p.CRM.Attributes, err = decodeAttributes(item); err != nil {
		return nil, err
	}
	if p.Subscriptions, err = decodeEntries(item, Subscriptions, func(m map[string]any) Subscription {
		return Subscription{Status: stringOf(m["status"]), Source: stringOf(m["source"]), UpdatedAt: timeOf(m["updated_at"]), Version: versionOf(m)}
	}); err != nil {
		return nil, err
	}
	if p.Consents, err = decodeEntries(item, Consents, func(m map[string]any) Consent {
		granted, _ := m["granted"].(bool)
		return Consent{Granted: granted, Source: stringOf(m["source"]), At: timeOf(m["at"]), Version: versionOf(m)}
	}); err != nil {
		return nil, err
	}
	f, err := DecodeFeatures(item)
	if err != nil {
		return nil, err
	}
	p.Behaviour = *f
	return p, nil
}

func number(item map[string]types.AttributeValue, attr string) (uint64, error) {
	v, ok := item[attr]
	if !ok {
		return 0, nil
	}
	n, ok := v.(*types.AttributeValueMemberN)
	if !ok {
		return 0, decodeErr(attr, fmt.Errorf("want a number, got %T", v))
	}
	u, err := strconv.ParseUint(n.Value, 10, 64)
	if err != nil {
		return 0, decodeErr(attr, err)
	}
	return u, nil
}

// decodeAttributes merges the attributes map with the crm_col_ columns (columns win).
func decodeAttributes(item map[string]types.AttributeValue) (map[string]any, error) {
	out := map[string]any{}
	if v, ok := item[attrAttributes]; ok {
		x, err := anyOf(v)
		if err != nil {
			return nil, decodeErr(attrAttributes, err)
		}
		switch x := x.(type) {
		case map[string]any:
			maps.Copy(out, x)
		case nil:
		default:
			// A jsonb that is not an object (an array, a number) is kept under its column name.
			out[attrAttributes] = x
		}
	}
	for k, v := range item {
		col, ok := strings.CutPrefix(k, attrColumnPrefix)
		if !ok {
			continue
		}
		x, err := anyOf(v)
		if err != nil {
			return nil, decodeErr(k, err)
		}
		out[col] = x
	}
	return out, nil
}

// anyOf converts an attribute value to what attributevalue.Unmarshal makes of it in an `any`
// (strings, float64 numbers, bools, nil, []byte, []any, map[string]any and the sets as
// []string, []float64, [][]byte), without reflection: every scanned profile's attributes pass
// through here.
func anyOf(av types.AttributeValue) (any, error) {
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		return v.Value, nil
	case *types.AttributeValueMemberN:
		return strconv.ParseFloat(v.Value, 64)
	case *types.AttributeValueMemberBOOL:
		return v.Value, nil
	case *types.AttributeValueMemberNULL:
		return nil, nil
	case *types.AttributeValueMemberB:
		return bytes.Clone(v.Value), nil
	case *types.AttributeValueMemberM:
		m := make(map[string]any, len(v.Value))
		for k, e := range v.Value {
			x, err := anyOf(e)
			if err != nil {
				return nil, err
			}
			m[k] = x
		}
		return m, nil
	case *types.AttributeValueMemberL:
		l := make([]any, len(v.Value))
		for i, e := range v.Value {
			x, err := anyOf(e)
			if err != nil {
				return nil, err
			}
			l[i] = x
		}
		return l, nil
	case *types.AttributeValueMemberSS:
		return slices.Clone(v.Value), nil
	case *types.AttributeValueMemberNS:
		ns := make([]float64, len(v.Value))
		for i, n := range v.Value {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return nil, err
			}
			ns[i] = f
		}
		return ns, nil
	case *types.AttributeValueMemberBS:
		bs := make([][]byte, len(v.Value))
		for i, b := range v.Value {
			bs[i] = bytes.Clone(b)
		}
		return bs, nil
	}
	return nil, fmt.Errorf("unsupported AttributeValue type, %T", av)
}

func decodeEntries[T any](item map[string]types.AttributeValue, kind EntryKind, conv func(map[string]any) T) (map[string]T, error) {
	out := map[string]T{}
	v, ok := item[string(kind)]
	if !ok {
		return out, nil
	}
	var m map[string]map[string]any
	// Versions are compared exactly: numbers stay strings (attributevalue.Number), not float64.
	if err := attributevalue.UnmarshalWithOptions(v, &m, func(o *attributevalue.DecoderOptions) { o.UseNumber = true }); err != nil {
		return nil, decodeErr(string(kind), err)
	}
	for k, e := range m {
		if deleted, _ := e[entryDeleted].(bool); deleted {
			continue // a tombstone: kept for its version only
		}
		out[k] = conv(e)
	}
	return out, nil
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

func versionOf(entry map[string]any) uint64 {
	n, _ := entry[entryLSN].(attributevalue.Number)
	v, _ := strconv.ParseUint(string(n), 10, 64)
	return v
}

func timeOf(v any) time.Time {
	t, _ := time.Parse(timeLayout, stringOf(v))
	return t
}

// Encode writes a whole profile as an item: what Decode reads back. The stores write profiles
// in parts (Store.ApplyCRM, ApplyEntry, Writer); Encode is for whole-profile writes (imports,
// rebuilds) and for tests of the layout.
func Encode(p *Profile) (map[string]types.AttributeValue, error) {
	item := map[string]types.AttributeValue{AttrID: &types.AttributeValueMemberS{Value: p.ID}}
	setS := func(attr, v string) {
		if v != "" {
			item[attr] = &types.AttributeValueMemberS{Value: v}
		}
	}
	setT := func(attr string, t time.Time) {
		if !t.IsZero() {
			item[attr] = &types.AttributeValueMemberS{Value: t.UTC().Format(timeLayout)}
		}
	}
	c := p.CRM
	setS(attrEmail, c.Email)
	setS(attrFirstName, c.FirstName)
	setS(attrLastName, c.LastName)
	setS(attrLocale, c.Locale)
	setS(attrTimezone, c.Timezone)
	setS(attrCountry, c.Country)
	setT(attrCreatedAt, c.CreatedAt)
	setT(attrCRMUpdatedAt, c.UpdatedAt)
	setT(attrErasedAt, p.ErasedAt)
	setT(attrUpdatedAt, p.UpdatedAt)
	if p.CRMVersion > 0 {
		item[attrCRMLSN] = &types.AttributeValueMemberN{Value: strconv.FormatUint(p.CRMVersion, 10)}
	}
	if len(c.Attributes) > 0 {
		av, err := attributevalue.Marshal(c.Attributes)
		if err != nil {
			return nil, fmt.Errorf("encode profile %s: attributes: %w", p.ID, err)
		}
		item[attrAttributes] = av
	}
	for kind, entries := range map[EntryKind]map[string]map[string]any{
		Subscriptions: entryMaps(p.Subscriptions, subscriptionFields),
		Consents:      entryMaps(p.Consents, consentFields),
	} {
		if len(entries) == 0 {
			continue
		}
		av, err := attributevalue.Marshal(entries)
		if err != nil {
			return nil, fmt.Errorf("encode profile %s: %s: %w", p.ID, kind, err)
		}
		item[string(kind)] = av
	}
	if p.Behaviour.Version > 0 || len(p.Behaviour.Counts) > 0 {
		state, err := encodeState(&p.Behaviour)
		if err != nil {
			return nil, fmt.Errorf("encode profile %s: %w", p.ID, err)
		}
		item[attrEventState] = &types.AttributeValueMemberB{Value: state}
		item[attrEventVersion] = &types.AttributeValueMemberN{Value: strconv.FormatInt(max(p.Behaviour.Version, 1), 10)}
	}
	return item, nil
}

func entryMaps[T any](in map[string]T, fields func(T) map[string]any) map[string]map[string]any {
	out := make(map[string]map[string]any, len(in))
	for k, v := range in {
		out[k] = fields(v)
	}
	return out
}

func subscriptionFields(s Subscription) map[string]any {
	m := map[string]any{"status": s.Status, "source": s.Source, entryLSN: s.Version}
	if !s.UpdatedAt.IsZero() {
		m["updated_at"] = s.UpdatedAt.UTC().Format(timeLayout)
	}
	return m
}

func consentFields(c Consent) map[string]any {
	m := map[string]any{"granted": c.Granted, "source": c.Source, entryLSN: c.Version}
	if !c.At.IsZero() {
		m["at"] = c.At.UTC().Format(timeLayout)
	}
	return m
}

var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(io.Discard, flate.BestSpeed)
	return w
}}

// encodeState is f as JSON, compressed: smaller items cost fewer write units (and an emulator
// much less time).
func encodeState(f *Features) ([]byte, error) {
	js, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(js)/2 + 16)
	buf.WriteByte(stateDeflate)
	zw := flateWriters.Get().(*flate.Writer)
	defer flateWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(js); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeState(b []byte, f *Features) error {
	if len(b) > 0 && b[0] == stateDeflate {
		zr := flate.NewReader(bytes.NewReader(b[1:]))
		defer zr.Close()
		var err error
		if b, err = io.ReadAll(io.LimitReader(zr, maxStateBytes)); err != nil {
			return fmt.Errorf("inflate: %w", err)
		}
	}
	return json.Unmarshal(b, f)
}

// DecodeFeatures reads the behavioural features of a profile item (other attributes are
// ignored): what the Writer reads before it aggregates.
func DecodeFeatures(item map[string]types.AttributeValue) (*Features, error) {
	f := &Features{}
	if item == nil {
		return f, nil
	}
	v, err := number(item, attrEventVersion)
	if err != nil {
		return nil, err
	}
	f.Version = int64(v)
	if st, ok := item[attrEventState]; ok {
		b, ok := st.(*types.AttributeValueMemberB)
		if !ok {
			return nil, decodeErr(attrEventState, fmt.Errorf("want binary, got %T", st))
		}
		if err := decodeState(b.Value, f); err != nil {
			return nil, decodeErr(attrEventState, err)
		}
	}
	return f, nil
}

// storedAttributes lists every top-level attribute name the codec writes (crm_col_ is a
// prefix), for the layout test.
func storedAttributes() []string {
	return slices.Sorted(slices.Values([]string{
		AttrID, attrEmail, attrFirstName, attrLastName, attrLocale, attrTimezone, attrCountry, attrCreatedAt,
		attrCRMUpdatedAt, attrAttributes, attrColumnPrefix, attrCRMLSN, attrSubscriptions, attrConsents,
		attrSubscriptionsLSN, attrConsentsLSN, attrEventVersion, attrEventState, attrErasedAt, attrUpdatedAt,
	}))
}
