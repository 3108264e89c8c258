// Package profile owns the one typed customer profile: the model (Profile: identity, CRM
// columns, the attributes namespace, subscriptions and consents with their versions,
// behavioural Features, erasure), its one DynamoDB codec (Encode, Decode: the only place
// attribute names are written down), its one read view (Profile.Fields, shared by segments and
// templates, documented by FieldSpecs and the README table generated from it), the store
// (version-guarded CRM and preference writes for CDC, Erase), the event aggregation
// (Features.Aggregate) and the Writer that applies events to profiles.
//
// Guarantees: every write is idempotent and version-guarded (CRM by the customers row's commit
// LSN, each preference entry by its own, behaviour by ev_version with event-id dedupe), so
// redelivery and replays never double count or go back in time; every list and map is bounded
// so an item stays far below DynamoDB's 400 KB.
//
// It imports pipeline/events (the event type it aggregates) and internal utilities only; it
// must not import pipeline/stream, pipeline/cdc, jobs or templates: they use it.
package profile
