// Package backends connects Tailor's commands to Postgres, Kinesis and DynamoDB: from explicit
// settings, from the local stack's state file (tailor dev up), or from the AWS SDK's standard
// configuration chain (real AWS, AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB honoured).
// It owns connection wiring and resource names only, no behaviour.
//
// It imports only localstack and the clients it builds; no component package imports it.
package backends
