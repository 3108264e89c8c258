package apikeys_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tailor-email/tailor/internal/apikeys"
	"github.com/tailor-email/tailor/internal/httpapi"
)

// A key is created once, shown once, and checked by the server through a Checker.
func ExampleStore_Create() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/tailor")
	if err != nil {
		panic(err)
	}
	k, err := apikeys.NewStore(pool).Create(ctx, "relay-1", []string{"send,events"})
	if err != nil {
		panic(err)
	}
	fmt.Println("give the relay", k.Secret) // only its SHA-256 is stored

	checker, err := apikeys.NewChecker(apikeys.CheckerConfig{DB: pool})
	if err != nil {
		panic(err)
	}
	fmt.Println(checker.Check(ctx, k.Secret, httpapi.ScopeSend)) // <nil>
}
