// Package demo runs Tailor's walking skeleton end to end against real backends, in one process:
// it seeds customers in Postgres and product views on Kinesis, runs CDC, the Kinesis consumer, a
// demo content service and River workers, creates a campaign and waits until every recipient's
// email is rendered. `tailor demo` (and so `make demo`) and the end-to-end test use it.
//
// It builds the system through internal/app, as the commands do, so it cannot drift from
// production wiring.
package demo
