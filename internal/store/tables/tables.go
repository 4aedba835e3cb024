package tables

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/rules"
)

// Interface guards.
var (
	_ store.Store = (*Store)(nil)
	_ store.Table = (*table)(nil)
)

// maxPage is the most rows Azure returns in one query page.
const maxPage = 1000

// Store is a store.Store on one Azure storage account (or Azurite). It is
// safe for concurrent use.
type Store struct {
	svc *aztables.ServiceClient

	mu     sync.Mutex
	tables map[string]*table // by canonical name; created on the service
}

// clientOptions are the SDK options of every Store. The SDK retries 408,
// 429, 500, 502, 503, 504 and connection errors (never 409 or 412); the delays
// here are short because callers of the store sit on a request path with
// their own deadline.
func clientOptions(extra ...policy.Policy) *aztables.ClientOptions {
	return &aztables.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry: policy.RetryOptions{
			MaxRetries:    3,
			RetryDelay:    100 * time.Millisecond,
			MaxRetryDelay: 2 * time.Second,
		},
		PerCallPolicies: append([]policy.Policy{wirePolicy{}}, extra...),
	}}
}

// NewFromConnectionString returns a Store for a storage connection string,
// for example Azurite's explicit development string (the SDK does not accept
// UseDevelopmentStorage=true). It does no I/O.
func NewFromConnectionString(cs string) (*Store, error) {
	return newFromConnectionString(cs)
}

func newFromConnectionString(cs string, extra ...policy.Policy) (*Store, error) {
	svc, err := aztables.NewServiceClientFromConnectionString(cs, clientOptions(extra...))
	if err != nil {
		return nil, fmt.Errorf("tables: connection string: %w", err)
	}
	return newStore(svc), nil
}

// NewFromServiceURL returns a Store for a table service URL
// (https://<account>.table.core.windows.net/) authorised with Entra ID, for
// example a managed identity. It does no I/O.
func NewFromServiceURL(serviceURL string, cred azcore.TokenCredential) (*Store, error) {
	svc, err := aztables.NewServiceClient(serviceURL, cred, clientOptions())
	if err != nil {
		return nil, fmt.Errorf("tables: service URL %s: %w", serviceURL, err)
	}
	return newStore(svc), nil
}

func newStore(svc *aztables.ServiceClient) *Store {
	return &Store{svc: svc, tables: map[string]*table{}}
}

// Close implements [store.Store.Close]. The SDK holds no resources that need
// closing, so it only exists for the interface.
func (s *Store) Close() error { return nil }

// Ping implements [store.Store.Ping] by listing at most one table.
func (s *Store) Ping(ctx context.Context) error {
	pager := s.svc.NewListTablesPager(&aztables.ListTablesOptions{Top: to.Ptr(int32(1))})
	if _, err := pager.NextPage(ctx); err != nil {
		return wrap("ping", "", "", "", err)
	}
	return nil
}

// Table implements [store.Store.Table]. The first call for a name creates the
// table (an existing one is fine); later calls return the cached client
// without I/O. Names are case-insensitive as on Azure and are sent in lower
// case because Azurite matches them case-sensitively.
func (s *Store) Table(ctx context.Context, name string) (store.Table, error) {
	canon, err := rules.Table(name)
	if err != nil {
		return nil, fmt.Errorf("tables: table: %w", err)
	}
	s.mu.Lock()
	t, ok := s.tables[canon]
	s.mu.Unlock()
	if ok {
		return t, nil
	}
	// Two goroutines may both create the table; the second gets
	// TableAlreadyExists, which is fine.
	if _, err := s.svc.CreateTable(ctx, canon, nil); err != nil && !isCode(err, aztables.TableAlreadyExists) {
		return nil, wrap("create table", canon, "", "", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tables[canon]; ok {
		return t, nil
	}
	t = &table{name: canon, c: s.svc.NewClient(canon)}
	s.tables[canon] = t
	return t, nil
}

// table is one table's client.
type table struct {
	name string
	c    *aztables.Client
}

// Get implements [store.Table.Get].
func (t *table) Get(ctx context.Context, pk, rk string) (store.Entity, error) {
	if err := rules.Keys(pk, rk); err != nil {
		return store.Entity{}, wrap("get", t.name, pk, rk, err)
	}
	resp, err := t.c.GetEntity(ctx, pk, rk, nil)
	if err != nil {
		return store.Entity{}, wrap("get", t.name, pk, rk, err)
	}
	e, err := decodeEntity(resp.Value)
	if err != nil {
		return store.Entity{}, wrap("get", t.name, pk, rk, err)
	}
	if resp.ETag != "" {
		e.ETag = string(resp.ETag)
	}
	return e, nil
}

// Insert implements [store.Table.Insert].
func (t *table) Insert(ctx context.Context, e store.Entity) (string, error) {
	body, err := encodeEntity(e)
	if err != nil {
		return "", wrap("insert", t.name, e.PartitionKey, e.RowKey, err)
	}
	resp, err := t.c.AddEntity(ctx, body, nil)
	if err != nil {
		return "", wrap("insert", t.name, e.PartitionKey, e.RowKey, err)
	}
	return string(resp.ETag), nil
}

// Update implements [store.Table.Update] (a Replace with If-Match).
func (t *table) Update(ctx context.Context, e store.Entity, ifMatch string) (string, error) {
	if err := rules.ETag(ifMatch); err != nil {
		return "", wrap("update", t.name, e.PartitionKey, e.RowKey, err)
	}
	body, err := encodeEntity(e)
	if err != nil {
		return "", wrap("update", t.name, e.PartitionKey, e.RowKey, err)
	}
	resp, err := t.c.UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{
		IfMatch:    to.Ptr(azcore.ETag(ifMatch)),
		UpdateMode: aztables.UpdateModeReplace,
	})
	if err != nil {
		return "", wrap("update", t.name, e.PartitionKey, e.RowKey, err)
	}
	return string(resp.ETag), nil
}

// Upsert implements [store.Table.Upsert] (Insert Or Replace).
func (t *table) Upsert(ctx context.Context, e store.Entity) (string, error) {
	body, err := encodeEntity(e)
	if err != nil {
		return "", wrap("upsert", t.name, e.PartitionKey, e.RowKey, err)
	}
	resp, err := t.c.UpsertEntity(ctx, body, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace})
	if err != nil {
		return "", wrap("upsert", t.name, e.PartitionKey, e.RowKey, err)
	}
	return string(resp.ETag), nil
}

// Delete implements [store.Table.Delete].
func (t *table) Delete(ctx context.Context, pk, rk, ifMatch string) error {
	if err := rules.Keys(pk, rk); err != nil {
		return wrap("delete", t.name, pk, rk, err)
	}
	if err := rules.ETag(ifMatch); err != nil {
		return wrap("delete", t.name, pk, rk, err)
	}
	_, err := t.c.DeleteEntity(ctx, pk, rk, &aztables.DeleteEntityOptions{IfMatch: to.Ptr(azcore.ETag(ifMatch))})
	if err != nil {
		return wrap("delete", t.name, pk, rk, err)
	}
	return nil
}

// Query implements [store.Table.Query]. It pages through the results (Azure
// returns at most 1000 rows and may return fewer with a continuation) and
// stops once Limit rows are read.
func (t *table) Query(ctx context.Context, q store.Query) ([]store.Entity, error) {
	if err := rules.Query(q); err != nil {
		return nil, wrap("query", t.name, q.PartitionKey, "", err)
	}
	opts := &aztables.ListEntitiesOptions{}
	if f := filter(q); f != "" {
		opts.Filter = &f
	}
	if q.Limit > 0 {
		opts.Top = to.Ptr(int32(min(q.Limit, maxPage)))
	}
	var out []store.Entity
	pager := t.c.NewListEntitiesPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, wrap("query", t.name, q.PartitionKey, "", err)
		}
		for _, raw := range page.Entities {
			e, err := decodeEntity(raw)
			if err != nil {
				return nil, wrap("query", t.name, q.PartitionKey, "", err)
			}
			out = append(out, e)
			if q.Limit > 0 && len(out) == q.Limit {
				return out, nil
			}
		}
	}
	return out, nil
}

// filter is the OData $filter of q; "" selects everything.
func filter(q store.Query) string {
	var parts []string
	if q.PartitionKey != "" {
		parts = append(parts, "PartitionKey eq "+literal(q.PartitionKey))
	}
	if q.RowKeyFrom != "" {
		parts = append(parts, "RowKey ge "+literal(q.RowKeyFrom))
	}
	if q.RowKeyTo != "" {
		parts = append(parts, "RowKey lt "+literal(q.RowKeyTo))
	}
	return strings.Join(parts, " and ")
}

// literal is s as an OData string literal: quoted, with quotes doubled.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Batch implements [store.Table.Batch] as one entity group transaction.
func (t *table) Batch(ctx context.Context, ops []store.Op) error {
	if err := rules.Batch(ops); err != nil {
		return wrap("batch", t.name, "", "", err)
	}
	if len(ops) == 0 {
		return nil
	}
	pk := ops[0].Entity.PartitionKey
	actions := make([]aztables.TransactionAction, len(ops))
	for i, op := range ops {
		a := aztables.TransactionAction{}
		var err error
		switch op.Kind {
		case store.OpInsert:
			a.ActionType = aztables.TransactionTypeAdd
		case store.OpUpsert:
			a.ActionType = aztables.TransactionTypeInsertReplace
		case store.OpMerge:
			a.ActionType = aztables.TransactionTypeInsertMerge
		case store.OpDelete:
			a.ActionType = aztables.TransactionTypeDelete // If-Match "*"
		}
		if op.Kind == store.OpDelete {
			a.Entity, err = encodeKeys(op.Entity.PartitionKey, op.Entity.RowKey)
		} else {
			a.Entity, err = encodeEntity(op.Entity)
		}
		if err != nil {
			return wrap("batch", t.name, pk, "", fmt.Errorf("op %d: %w", i, err))
		}
		actions[i] = a
	}
	if _, err := t.c.SubmitTransaction(ctx, actions, nil); err != nil {
		return wrapBatch(t.name, pk, ops, err)
	}
	return nil
}

// isCode reports whether err is a service error with the given code.
func isCode(err error, code aztables.TableErrorCode) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.ErrorCode == string(code)
}
