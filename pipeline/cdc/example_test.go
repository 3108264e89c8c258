package cdc_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/tailor-email/tailor/internal/backends"
	"github.com/tailor-email/tailor/pipeline/cdc"
	"github.com/tailor-email/tailor/pipeline/deadletter"
	"github.com/tailor-email/tailor/pipeline/profile"
)

// Example runs CDC as `tailor cdc` does: one active process per slot, until a signal.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b, err := backends.Open(ctx, backends.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	store := profile.NewStore(b.DynamoDB, b.Names.Profiles)
	c, err := cdc.New(cdc.Config{
		DatabaseURL: b.DatabaseURL, Slot: b.Names.Slot, Publication: b.Names.Publication,
		DeadLetters: deadletter.NewStore(b.Pool),
	}, store)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx); err != nil { // nil when ctx ends
		log.Fatal(err)
	}
}
