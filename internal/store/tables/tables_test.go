package tables

import (
	"os"
	"testing"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/storetest"
)

// az is the Azurite all tests of this package share.
var az azurite.Shared

func TestMain(m *testing.M) { os.Exit(az.Run(m)) }

func open(t *testing.T) store.Store {
	t.Helper()
	s, err := NewFromConnectionString(az.Start(t).ConnectionString())
	if err != nil {
		t.Fatalf("NewFromConnectionString: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, open)
}
