package profile

import "github.com/aws/smithy-go"

// RefusedForTest classifies a DynamoDB API error as refused's callers see it.
func RefusedForTest(code, msg string) error {
	return refused(&smithy.GenericAPIError{Code: code, Message: msg})
}

// StoredAttributesForTest lists the item's top-level attribute names.
var StoredAttributesForTest = storedAttributes

// AnyOfForTest converts an attribute value as decodeAttributes does.
var AnyOfForTest = anyOf
