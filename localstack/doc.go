// Package localstack runs Tailor's local stack: a private PostgreSQL cluster with
// wal_level=logical, a Kinesis emulator (kinesalite by default, kinesis-mock on request) and a
// DynamoDB emulator (dynalite), all bound to loopback on free ports, or LocalStack through
// testcontainers-go where a Docker engine answers.
//
// A stack is either detached (tailor dev up: it outlives the command and is found again through
// the state file in its directory) or attached (tests: its processes die with the process that
// started them, even when that process is killed). The package owns processes, ports, data
// directories and the state file; it knows nothing of Tailor's schema, streams or tables.
package localstack
