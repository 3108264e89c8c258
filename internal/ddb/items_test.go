package ddb_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/tailor-email/tailor/internal/ddb"
)

// canned answers every request with one response.
type canned struct {
	status int
	body   []byte
	crc    string // X-Amz-Crc32; "" computes the right one
	calls  int
}

func (c *canned) Do(r *http.Request) (*http.Response, error) {
	c.calls++
	h := http.Header{"Content-Type": {"application/x-amz-json-1.0"}, "X-Amzn-Requestid": {"req-1"}}
	crc := c.crc
	if crc == "" {
		crc = strconv.FormatUint(uint64(crc32.ChecksumIEEE(c.body)), 10)
	}
	h.Set("X-Amz-Crc32", crc)
	return &http.Response{StatusCode: c.status, Status: http.StatusText(c.status), Header: h,
		Body: io.NopCloser(bytes.NewReader(c.body)), Request: r, ContentLength: int64(len(c.body))}, nil
}

func cannedClient(c *canned) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{Region: "eu-west-1", HTTPClient: c, BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""), RetryMaxAttempts: 1})
}

// scanBoth scans body with the SDK's deserializer and with ddb.Items.
func scanBoth(t testing.TB, status int, body []byte) (sdk *dynamodb.ScanOutput, sdkErr error, fast *ddb.Items, fastOut *dynamodb.ScanOutput, fastErr error) {
	in := &dynamodb.ScanInput{TableName: aws.String("profiles")}
	sdk, sdkErr = cannedClient(&canned{status: status, body: body}).Scan(context.Background(), in)
	fast = &ddb.Items{}
	fastOut, fastErr = cannedClient(&canned{status: status, body: body}).Scan(context.Background(), in, fast.Option)
	return sdk, sdkErr, fast, fastOut, fastErr
}

// genValue is a random attribute value, nested up to depth.
func genValue(r *rand.Rand, depth int) types.AttributeValue {
	n := 10
	if depth <= 0 {
		n = 8
	}
	switch r.IntN(n) {
	case 0:
		return &types.AttributeValueMemberS{Value: genString(r)}
	case 1:
		return &types.AttributeValueMemberN{Value: strconv.FormatFloat(r.NormFloat64()*1e4, 'g', -1, 64)}
	case 2:
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return &types.AttributeValueMemberB{Value: b}
	case 3:
		return &types.AttributeValueMemberBOOL{Value: r.IntN(2) == 0}
	case 4:
		return &types.AttributeValueMemberNULL{Value: true}
	case 5:
		ss := make([]string, 1+r.IntN(4))
		for i := range ss {
			ss[i] = genString(r)
		}
		return &types.AttributeValueMemberSS{Value: ss}
	case 6:
		ns := make([]string, 1+r.IntN(4))
		for i := range ns {
			ns[i] = strconv.Itoa(r.IntN(1e6) - 5e5)
		}
		return &types.AttributeValueMemberNS{Value: ns}
	case 7:
		bs := make([][]byte, 1+r.IntN(3))
		for i := range bs {
			bs[i] = []byte(genString(r))
		}
		return &types.AttributeValueMemberBS{Value: bs}
	case 8:
		return &types.AttributeValueMemberM{Value: genItem(r, depth-1)}
	default:
		l := make([]types.AttributeValue, r.IntN(5))
		for i := range l {
			l[i] = genValue(r, depth-1)
		}
		return &types.AttributeValueMemberL{Value: l}
	}
}

func genItem(r *rand.Rand, depth int) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{}
	for range r.IntN(6) {
		m[genString(r)] = genValue(r, depth)
	}
	return m
}

// genString mixes ASCII, JSON's escapes, control characters, multi-byte and astral runes.
func genString(r *rand.Rand) string {
	pieces := []string{"a", "Zoë", "price", " ", `"`, `\`, "/", "\n", "\t", "\x01", "\x1f", "€", "日本", "😀", "\u2028", "<b>&amp;", "\u00e9"}
	var b strings.Builder
	for range r.IntN(8) {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// wire writes v in DynamoDB's JSON, escaping strings in one of several valid ways and adding
// whitespace at random.
func wire(r *rand.Rand, b *bytes.Buffer, v any) {
	ws := func() {
		if r.IntN(4) == 0 {
			b.WriteString([]string{" ", "\n", "\t ", "\r\n"}[r.IntN(4)])
		}
	}
	str := func(s string) {
		if r.IntN(2) == 0 {
			raw, _ := json.Marshal(s) // \u003c for <, \u2028 ...
			b.Write(raw)
			return
		}
		b.WriteByte('"')
		for _, c := range s {
			switch {
			case c == '"' || c == '\\':
				b.WriteString(`\` + string(c))
			case c == '/' && r.IntN(2) == 0:
				b.WriteString(`\/`)
			case c == '\n':
				b.WriteString(`\n`)
			case c < 0x20 || (c > 0x7f && r.IntN(3) == 0):
				if c > 0xffff {
					c -= 0x10000
					fmt.Fprintf(b, `\u%04X\u%04x`, 0xd800+(c>>10), 0xdc00+(c&0x3ff))
				} else {
					fmt.Fprintf(b, `\u%04x`, c)
				}
			default:
				b.WriteRune(c)
			}
		}
		b.WriteByte('"')
	}
	obj := func(keys []string, val func(string)) {
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			ws()
			str(k)
			ws()
			b.WriteByte(':')
			ws()
			val(k)
			ws()
		}
		b.WriteByte('}')
	}
	list := func(n int, elem func(int)) {
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			ws()
			elem(i)
		}
		ws()
		b.WriteByte(']')
	}
	switch v := v.(type) {
	case map[string]types.AttributeValue:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		obj(keys, func(k string) { wire(r, b, v[k]) })
	case *types.AttributeValueMemberS:
		obj([]string{"S"}, func(string) { str(v.Value) })
	case *types.AttributeValueMemberN:
		obj([]string{"N"}, func(string) { str(v.Value) })
	case *types.AttributeValueMemberB:
		obj([]string{"B"}, func(string) { str(base64.StdEncoding.EncodeToString(v.Value)) })
	case *types.AttributeValueMemberBOOL:
		obj([]string{"BOOL"}, func(string) { fmt.Fprint(b, v.Value) })
	case *types.AttributeValueMemberNULL:
		obj([]string{"NULL"}, func(string) { fmt.Fprint(b, v.Value) })
	case *types.AttributeValueMemberSS:
		obj([]string{"SS"}, func(string) { list(len(v.Value), func(i int) { str(v.Value[i]) }) })
	case *types.AttributeValueMemberNS:
		obj([]string{"NS"}, func(string) { list(len(v.Value), func(i int) { str(v.Value[i]) }) })
	case *types.AttributeValueMemberBS:
		obj([]string{"BS"}, func(string) {
			list(len(v.Value), func(i int) { str(base64.StdEncoding.EncodeToString(v.Value[i])) })
		})
	case *types.AttributeValueMemberM:
		obj([]string{"M"}, func(string) { wire(r, b, v.Value) })
	case *types.AttributeValueMemberL:
		obj([]string{"L"}, func(string) { list(len(v.Value), func(i int) { wire(r, b, v.Value[i]) }) })
	default:
		panic(fmt.Sprintf("wire: %T", v))
	}
}

// scanBody is a Scan response with items, a last key and the counts.
func scanBody(r *rand.Rand, items []map[string]types.AttributeValue, last map[string]types.AttributeValue) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"Count": %d, "Items":`, len(items))
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteString(",\n")
		}
		wire(r, &b, it)
	}
	b.WriteByte(']')
	if last != nil {
		b.WriteString(`, "LastEvaluatedKey": `)
		wire(r, &b, last)
	}
	b.WriteString(`, "ScannedCount": 0}`)
	return b.Bytes()
}

func TestItems_DecodesWhatTheSDKDecodes(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	for n := range 300 {
		items := make([]map[string]types.AttributeValue, r.IntN(6))
		for i := range items {
			items[i] = genItem(r, 4)
		}
		var last map[string]types.AttributeValue
		if n%2 == 0 {
			last = map[string]types.AttributeValue{"customer_id": &types.AttributeValueMemberS{Value: genString(r)}}
		}
		body := scanBody(r, items, last)
		sdk, sdkErr, fast, fastOut, fastErr := scanBoth(t, 200, body)
		require.NoError(t, sdkErr, "%s", body)
		require.NoError(t, fastErr, "%s", body)
		require.True(t, fast.Decoded, "%s", body)
		require.Empty(t, fastOut.Items, "the SDK got the empty object")
		require.Equal(t, items, sdk.Items, "the generator and the SDK agree: %s", body)
		require.Equal(t, sdk.Items, fast.Items, "%s", body)
		require.Equal(t, sdk.LastEvaluatedKey, fast.LastKey, "%s", body)
	}
}

func TestItems_LeavesWhatItDoesNotAcceptToTheSDK(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"Items": [{"a": {"XX": "unknown type"}}]}`,
		`{"Items": [{"a": {"S": "lone \ud800 half"}}]}`,
		`{"Items": [{"a": {}}]}`,
		`{"Items": [{"a": {"S": "x", "N": "1"}}]}`,
		`{"Items": [{"a": {"S": "x"}}]} trailing`,
		`{"Items": [{"a": {"S": "x"}}], "ConsumedCapacity": {"TableName": "p", "CapacityUnits": 0.5}}`,
		`{"Items": [{"a": {"S": "x"}}], "ConsumedCapacity": []}`,
		`{"Items": [{"a": {"S": "x"}}], "Count": 1.5}`,
		`{"Items": [{"a": {"S": "x"}}], "Count": 99999999999}`,
	} {
		sdk, sdkErr, fast, fastOut, fastErr := scanBoth(t, 200, []byte(body))
		require.False(t, fast.Decoded, body)
		require.Nil(t, fast.Items, body)
		if sdkErr != nil {
			require.Error(t, fastErr, body)
			continue
		}
		require.NoError(t, fastErr, body)
		require.Equal(t, sdk.Items, fastOut.Items, body)
	}
	_, _, err := ddb.DecodeItems([]byte(`{"Items": [{"a": {"XX": "unknown type"}}]}`))
	require.ErrorContains(t, err, "unknown attribute value type")
}

func TestItems_ErrorsStayTheSDKs(t *testing.T) {
	t.Parallel()
	body := []byte(`{"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", "message": "Requested resource not found"}`)
	_, _, fast, _, err := scanBoth(t, 400, body)
	var nf *types.ResourceNotFoundException
	require.ErrorAs(t, err, &nf)
	require.False(t, fast.Decoded)

	// A body that does not match its CRC32 is refused (the SDK's own path does not read the
	// body to its end and takes it).
	ok := []byte(`{"Items": [{"a": {"S": "x"}}]}`)
	in := &dynamodb.ScanInput{TableName: aws.String("profiles")}
	it := &ddb.Items{}
	_, err = cannedClient(&canned{status: 200, body: ok, crc: "12345"}).Scan(context.Background(), in, it.Option)
	require.ErrorContains(t, err, "checksum")
	require.False(t, it.Decoded)
}

func TestBatchItems_DecodesWhatTheSDKDecodes(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(9, 10))
	in := &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{"p": {Keys: []map[string]types.AttributeValue{
		{"id": &types.AttributeValueMemberS{Value: "x"}}}}}}
	for n := range 100 {
		var b bytes.Buffer
		b.WriteString(`{"Responses": {`)
		for i := range 1 + n%3 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"table%d": [`, i)
			for j := range n % 5 {
				if j > 0 {
					b.WriteByte(',')
				}
				wire(r, &b, genItem(r, 3))
			}
			b.WriteByte(']')
		}
		b.WriteString(`}, "UnprocessedKeys": {}}`)
		sdk, err := cannedClient(&canned{status: 200, body: b.Bytes()}).BatchGetItem(context.Background(), in)
		require.NoError(t, err)
		fast := &ddb.BatchItems{}
		out, err := cannedClient(&canned{status: 200, body: b.Bytes()}).BatchGetItem(context.Background(), in, fast.Option)
		require.NoError(t, err)
		require.True(t, fast.Decoded, "%s", b.Bytes())
		require.Empty(t, out.Responses)
		require.Empty(t, out.UnprocessedKeys)
		require.Equal(t, sdk.Responses, fast.Responses, "%s", b.Bytes())
	}

	// Unprocessed keys are the SDK's to decode, so the caller retries them as before.
	body := []byte(`{"Responses": {"p": []}, "UnprocessedKeys": {"p": {"Keys": [{"id": {"S": "x"}}], "ConsistentRead": true}}}`)
	fast := &ddb.BatchItems{}
	out, err := cannedClient(&canned{status: 200, body: body}).BatchGetItem(context.Background(), in, fast.Option)
	require.NoError(t, err)
	require.False(t, fast.Decoded)
	require.Len(t, out.UnprocessedKeys["p"].Keys, 1)
}

// FuzzDecodeItems: whatever DecodeItems or DecodeBatchGet accepts, the SDK accepts and
// decodes to the same values.
func FuzzDecodeItems(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 1))
	for range 20 {
		f.Add(scanBody(r, []map[string]types.AttributeValue{genItem(r, 3)}, nil))
	}
	f.Add([]byte(`{"Items": [{"a": {"S": "\u00e9\ud83d\ude00"}}], "LastEvaluatedKey": null}`))
	f.Add([]byte(`{"Responses": {"p": [{"a": {"N": "1"}}]}, "UnprocessedKeys": {}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.Clone(body) // the decoded strings share it
		if res, err := ddb.DecodeBatchGet(body); err == nil {
			in := &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{"p": {Keys: []map[string]types.AttributeValue{{"id": &types.AttributeValueMemberS{Value: "x"}}}}}}
			sdk, sdkErr := cannedClient(&canned{status: 200, body: body}).BatchGetItem(context.Background(), in)
			require.NoError(t, sdkErr, "%q", body)
			require.Equal(t, sdk.Responses, res, "%q", body)
			require.Empty(t, sdk.UnprocessedKeys, "%q", body)
		}
		items, last, err := ddb.DecodeItems(body)
		if err != nil {
			return // left to the SDK
		}
		// What DecodeItems accepts, the SDK accepts, with the same values.
		sdk, sdkErr := cannedClient(&canned{status: 200, body: body}).Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String("p")})
		require.NoError(t, sdkErr, "%q", body)
		require.Equal(t, sdk.Items, items, "%q", body)
		require.Equal(t, sdk.LastEvaluatedKey, last, "%q", body)
		require.True(t, utf8.Valid(body), "an accepted body is valid UTF-8: %q", body)
	})
}

// BenchmarkDecodeItems compares the SDK's deserializer with Items on a page of 1 000 profiles
// shaped like the campaign benchmarks' (five product picks each), through a canned transport.
func BenchmarkDecodeItems(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	items := make([]map[string]types.AttributeValue, 1000)
	for i := range items {
		picks := make([]types.AttributeValue, 5)
		for j := range picks {
			picks[j] = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
				"sku": &types.AttributeValueMemberS{Value: fmt.Sprintf("SKU-%05d", r.IntN(99999))}, "name": &types.AttributeValueMemberS{Value: "Relaxed Linen Shirt"},
				"category": &types.AttributeValueMemberS{Value: "clothing"}, "price": &types.AttributeValueMemberN{Value: "4990"},
				"was": &types.AttributeValueMemberN{Value: "0"}, "image": &types.AttributeValueMemberS{Value: "relaxed-linen-shirt"},
				"blurb": &types.AttributeValueMemberS{Value: "Cut for an easy fit and made to last. Machine washable at 30°C."}}}
		}
		items[i] = map[string]types.AttributeValue{"customer_id": &types.AttributeValueMemberS{Value: fmt.Sprintf("b%06d", i)},
			"email": &types.AttributeValueMemberS{Value: fmt.Sprintf("b%d@example.com", i)}, "first_name": &types.AttributeValueMemberS{Value: "Ada"},
			"locale": &types.AttributeValueMemberS{Value: "en"}, "country": &types.AttributeValueMemberS{Value: "DE"},
			"attributes": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"picks": &types.AttributeValueMemberL{Value: picks}}}}
	}
	body := scanBody(r, items, nil)
	in := &dynamodb.ScanInput{TableName: aws.String("profiles")}
	for _, fast := range []bool{false, true} {
		b.Run(map[bool]string{false: "sdk", true: "items"}[fast], func(b *testing.B) {
			c := cannedClient(&canned{status: 200, body: body})
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				it := &ddb.Items{}
				var opts []func(*dynamodb.Options)
				if fast {
					opts = append(opts, it.Option)
				}
				out, err := c.Scan(context.Background(), in, opts...)
				if err != nil || len(out.Items)+len(it.Items) != len(items) {
					b.Fatalf("%v: %d items", err, len(out.Items)+len(it.Items))
				}
			}
		})
	}
}
