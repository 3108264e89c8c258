// Package profiletest holds test helpers for the event path: generated events and the ground
// truth a profile must hold for them, computed independently of profile.Features. Tests of
// pipeline/profile and of the whole event path (pipeline/stream) share it. Tests only.
package profiletest
