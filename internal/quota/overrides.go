package quota

import (
	"context"
	"errors"
	"fmt"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/store"
)

// Override replaces some of a subject's configured limits. A nil field
// keeps the configured value; a zero value means unlimited.
type Override struct {
	RPM           *int64
	TPM           *int64
	MonthlyTokens *int64
	// MonthlyCost and MonthlyCostSoft are the cost budgets in nanos of
	// limits.currency (columns MonthlyCostNanos, MonthlyCostSoftNanos).
	MonthlyCost     *int64
	MonthlyCostSoft *int64
}

// apply returns base with o's fields put over it.
func (o Override) apply(base config.Limit) config.Limit {
	if o.RPM != nil {
		base.RPM = *o.RPM
	}
	if o.TPM != nil {
		base.TPM = *o.TPM
	}
	if o.MonthlyTokens != nil {
		base.MonthlyTokens = *o.MonthlyTokens
	}
	if o.MonthlyCost != nil {
		base.MonthlyCost = money.Nanos(*o.MonthlyCost).Float()
	}
	if o.MonthlyCostSoft != nil {
		base.MonthlyCostSoft = money.Nanos(*o.MonthlyCostSoft).Float()
	}
	return base
}

// merge returns o with the fields set in n replaced.
func (o Override) merge(n Override) Override {
	if n.RPM != nil {
		o.RPM = n.RPM
	}
	if n.TPM != nil {
		o.TPM = n.TPM
	}
	if n.MonthlyTokens != nil {
		o.MonthlyTokens = n.MonthlyTokens
	}
	if n.MonthlyCost != nil {
		o.MonthlyCost = n.MonthlyCost
	}
	if n.MonthlyCostSoft != nil {
		o.MonthlyCostSoft = n.MonthlyCostSoft
	}
	return o
}

// SubjectOverride is one row of the Limits table.
type SubjectOverride struct {
	Subject  Subject
	Override Override
}

// Overrides are per-key, per-app and per-team limits kept in their own
// table (Limits: PartitionKey = kind "key" / "app" / "team", RowKey = the
// escaped id, optional Int64 columns RPM, TPM, MonthlyTokens,
// MonthlyCostNanos, MonthlyCostSoftNanos), so the Keys
// table is not touched. The Limiter reads the whole table every
// limits.overrideTTL (default 30 s); a change takes effect within it.
type Overrides struct {
	t store.Table
}

// NewOverrides returns the overrides kept in t.
func NewOverrides(t store.Table) *Overrides { return &Overrides{t: t} }

// Get returns the override of s; a subject without one has a zero Override
// and no error.
func (o *Overrides) Get(ctx context.Context, s Subject) (Override, error) {
	e, err := o.t.Get(ctx, string(s.Kind), escapeKey(s.ID))
	if errors.Is(err, store.ErrNotFound) {
		return Override{}, nil
	}
	if err != nil {
		return Override{}, fmt.Errorf("quota: read override of %s: %w", s, err)
	}
	return fromEntity(e), nil
}

// Set merges ov into the override of s: fields left nil keep their stored
// value. Negative values are rejected.
func (o *Overrides) Set(ctx context.Context, s Subject, ov Override) error {
	if err := validSubject(s); err != nil {
		return err
	}
	for _, p := range []*int64{ov.RPM, ov.TPM, ov.MonthlyTokens, ov.MonthlyCost, ov.MonthlyCostSoft} {
		if p != nil && *p < 0 {
			return fmt.Errorf("quota: limits must not be negative (0 means unlimited)")
		}
	}
	cur, err := o.Get(ctx, s)
	if err != nil {
		return err
	}
	if _, err := o.t.Upsert(ctx, toEntity(s, cur.merge(ov))); err != nil {
		return fmt.Errorf("quota: write override of %s: %w", s, err)
	}
	return nil
}

// Delete removes the override of s; removing a missing one is not an error.
func (o *Overrides) Delete(ctx context.Context, s Subject) error {
	err := o.t.Delete(ctx, string(s.Kind), escapeKey(s.ID), "*")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("quota: delete override of %s: %w", s, err)
	}
	return nil
}

// List returns every override, ordered by kind and id.
func (o *Overrides) List(ctx context.Context) ([]SubjectOverride, error) {
	es, err := o.t.Query(ctx, store.Query{AllPartitions: true})
	if err != nil {
		return nil, fmt.Errorf("quota: list overrides: %w", err)
	}
	out := make([]SubjectOverride, 0, len(es))
	for _, e := range es {
		out = append(out, SubjectOverride{
			Subject:  Subject{Kind: Kind(e.PartitionKey), ID: unescapeKey(e.RowKey)},
			Override: fromEntity(e),
		})
	}
	return out, nil
}

func validSubject(s Subject) error {
	switch s.Kind {
	case KindKey, KindApp, KindTeam:
	default:
		return fmt.Errorf("quota: subject kind %q: want key, app or team", s.Kind)
	}
	if s.ID == "" {
		return fmt.Errorf("quota: subject id is empty")
	}
	return nil
}

func toEntity(s Subject, o Override) store.Entity {
	props := map[string]any{}
	if o.RPM != nil {
		props["RPM"] = *o.RPM
	}
	if o.TPM != nil {
		props["TPM"] = *o.TPM
	}
	if o.MonthlyTokens != nil {
		props["MonthlyTokens"] = *o.MonthlyTokens
	}
	if o.MonthlyCost != nil {
		props["MonthlyCostNanos"] = *o.MonthlyCost
	}
	if o.MonthlyCostSoft != nil {
		props["MonthlyCostSoftNanos"] = *o.MonthlyCostSoft
	}
	return store.Entity{PartitionKey: string(s.Kind), RowKey: escapeKey(s.ID), Props: props}
}

func fromEntity(e store.Entity) Override {
	var o Override
	get := func(name string) *int64 {
		if v, ok := e.Props[name].(int64); ok {
			return &v
		}
		return nil
	}
	o.RPM = get("RPM")
	o.TPM = get("TPM")
	o.MonthlyTokens = get("MonthlyTokens")
	o.MonthlyCost = get("MonthlyCostNanos")
	o.MonthlyCostSoft = get("MonthlyCostSoftNanos")
	return o
}
