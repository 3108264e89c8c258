package jobs

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tailor-email/tailor/pipeline/profile"
)

// ProfilePage is one page of a parallel scan: the decoded profiles (with their items, for
// Config.RenderFromScan), the items that did not decode (counted as scan:decode_error), and
// the cursor to go on from ("" when the segment is done).
type ProfilePage struct {
	Profiles []*profile.Profile
	Items    []map[string]types.AttributeValue
	Bad      []error
	Last     string
}

// DynamoProfiles reads profiles page by page for the fan-out: the profile store's reads, plus
// a parallel scan that starts from a persisted cursor. The table's only key is
// profile.AttrID, so a cursor is one customer id.
type DynamoProfiles struct {
	*profile.Store
	DB *dynamodb.Client
}

var _ ProfileReader = (*DynamoProfiles)(nil)

// ScanPage reads one page (at most limit items) of segment of a total-segment parallel scan,
// after the customer id after ("" for the start), with consistent reads.
func (d *DynamoProfiles) ScanPage(ctx context.Context, segment, total int, after string, limit int) (*ProfilePage, error) {
	in := &dynamodb.ScanInput{
		TableName: aws.String(d.Table()), Segment: aws.Int32(int32(segment)), TotalSegments: aws.Int32(int32(total)),
		ConsistentRead: aws.Bool(true), Limit: aws.Int32(int32(limit)),
	}
	if after != "" {
		in.ExclusiveStartKey = map[string]types.AttributeValue{profile.AttrID: &types.AttributeValueMemberS{Value: after}}
	}
	out, err := d.DB.Scan(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("scan profiles (segment %d/%d): %w", segment, total, err)
	}
	page := &ProfilePage{}
	if k, ok := out.LastEvaluatedKey[profile.AttrID].(*types.AttributeValueMemberS); ok {
		page.Last = k.Value
	}
	for _, item := range out.Items {
		p, err := profile.Decode(item)
		if err != nil {
			id, _ := item[profile.AttrID].(*types.AttributeValueMemberS)
			if id != nil {
				err = fmt.Errorf("profile %s: %w", id.Value, err)
			}
			page.Bad = append(page.Bad, err)
			continue
		}
		page.Profiles = append(page.Profiles, p)
		page.Items = append(page.Items, item)
	}
	return page, nil
}

// EncodedProfile is a scanned profile item carried in a render job's arguments, in DynamoDB's
// JSON form ({"S": ...}, {"N": ...}, {"B": base64}, {"M": {...}}, ...), decoded by the profile
// codec like any item read from the table.
type EncodedProfile map[string]attrJSON

type attrJSON struct {
	S    *string             `json:"S,omitempty"`
	N    *string             `json:"N,omitempty"`
	B    []byte              `json:"B,omitempty"`
	BOOL *bool               `json:"BOOL,omitempty"`
	NULL bool                `json:"NULL,omitempty"`
	M    map[string]attrJSON `json:"M,omitempty"`
	L    []attrJSON          `json:"L,omitempty"`
	SS   []string            `json:"SS,omitempty"`
	NS   []string            `json:"NS,omitempty"`
	BS   [][]byte            `json:"BS,omitempty"`
	// empty collections need a marker: omitempty drops them
	EmptyM bool `json:"EM,omitempty"`
	EmptyL bool `json:"EL,omitempty"`
}

// encodeItem converts an item to its EncodedProfile.
func encodeItem(item map[string]types.AttributeValue) EncodedProfile {
	out := make(EncodedProfile, len(item))
	for k, v := range item {
		out[k] = encodeAttr(v)
	}
	return out
}

func encodeAttr(v types.AttributeValue) attrJSON {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return attrJSON{S: &v.Value}
	case *types.AttributeValueMemberN:
		return attrJSON{N: &v.Value}
	case *types.AttributeValueMemberB:
		return attrJSON{B: v.Value}
	case *types.AttributeValueMemberBOOL:
		return attrJSON{BOOL: &v.Value}
	case *types.AttributeValueMemberM:
		m := make(map[string]attrJSON, len(v.Value))
		for k, e := range v.Value {
			m[k] = encodeAttr(e)
		}
		return attrJSON{M: m, EmptyM: len(m) == 0}
	case *types.AttributeValueMemberL:
		l := make([]attrJSON, len(v.Value))
		for i, e := range v.Value {
			l[i] = encodeAttr(e)
		}
		return attrJSON{L: l, EmptyL: len(l) == 0}
	case *types.AttributeValueMemberSS:
		return attrJSON{SS: v.Value}
	case *types.AttributeValueMemberNS:
		return attrJSON{NS: v.Value}
	case *types.AttributeValueMemberBS:
		return attrJSON{BS: v.Value}
	}
	return attrJSON{NULL: true}
}

// decode converts an EncodedProfile back to its item and decodes it.
func (e EncodedProfile) decode() (*profile.Profile, error) {
	item := make(map[string]types.AttributeValue, len(e))
	for k, v := range e {
		item[k] = v.attr()
	}
	return profile.Decode(item)
}

func (a attrJSON) attr() types.AttributeValue {
	switch {
	case a.S != nil:
		return &types.AttributeValueMemberS{Value: *a.S}
	case a.N != nil:
		return &types.AttributeValueMemberN{Value: *a.N}
	case a.B != nil:
		return &types.AttributeValueMemberB{Value: a.B}
	case a.BOOL != nil:
		return &types.AttributeValueMemberBOOL{Value: *a.BOOL}
	case a.M != nil || a.EmptyM:
		m := make(map[string]types.AttributeValue, len(a.M))
		for k, e := range a.M {
			m[k] = e.attr()
		}
		return &types.AttributeValueMemberM{Value: m}
	case a.L != nil || a.EmptyL:
		l := make([]types.AttributeValue, len(a.L))
		for i, e := range a.L {
			l[i] = e.attr()
		}
		return &types.AttributeValueMemberL{Value: l}
	case a.SS != nil:
		return &types.AttributeValueMemberSS{Value: a.SS}
	case a.NS != nil:
		return &types.AttributeValueMemberNS{Value: a.NS}
	case a.BS != nil:
		return &types.AttributeValueMemberBS{Value: a.BS}
	}
	return &types.AttributeValueMemberNULL{Value: true}
}

// ItemCount is the table's item count as DynamoDB last computed it (about every six hours).
func (d *DynamoProfiles) ItemCount(ctx context.Context) (int64, error) {
	out, err := d.DB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(d.Table())})
	if err != nil {
		return 0, fmt.Errorf("describe table %s: %w", d.Table(), err)
	}
	return aws.ToInt64(out.Table.ItemCount), nil
}
