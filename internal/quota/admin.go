package quota

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/foundry-gateway/gateway/internal/policy"
)

// ErrBadSubject marks a limits subject that is malformed or names nothing
// the gateway knows (the admin API answers 400, the CLI exits 2).
var ErrBadSubject = errors.New("bad limits subject")

// Admin manages limit overrides with subject checks, for `handler limits`
// and the admin API alike (one code path, like auth.Admin for keys).
type Admin struct {
	Overrides *Overrides
	// KeySubject resolves a key id or fgw-<id> prefix to the id quotas
	// count the key by (its lineage); found is false for no such key.
	KeySubject func(ctx context.Context, id string) (subject string, found bool, err error)
	// KnownTeam reports whether a team exists: configured under
	// limits.teams, named by an identity rule, or owning a key.
	KnownTeam func(ctx context.Context, team string) (bool, error)
}

// OverrideView is how an override is shown by `handler limits list --json`
// and GET /admin/limits: the field style of `handler keys list --json`.
type OverrideView struct {
	Kind          Kind   `json:"kind"`
	ID            string `json:"id"`
	RPM           *int64 `json:"rpm,omitempty"`
	TPM           *int64 `json:"tpm,omitempty"`
	MonthlyTokens *int64 `json:"monthly_tokens,omitempty"`
	// Cost budgets in nanos of limits.currency (exact integers).
	MonthlyCost     *int64 `json:"monthly_cost_nanos,omitempty"`
	MonthlyCostSoft *int64 `json:"monthly_cost_soft_nanos,omitempty"`
}

// Override is v's override.
func (v OverrideView) Override() Override {
	return Override{RPM: v.RPM, TPM: v.TPM, MonthlyTokens: v.MonthlyTokens, MonthlyCost: v.MonthlyCost, MonthlyCostSoft: v.MonthlyCostSoft}
}

// View is o in its shown form.
func (o SubjectOverride) View() OverrideView {
	return OverrideView{Kind: o.Subject.Kind, ID: o.Subject.ID, RPM: o.Override.RPM, TPM: o.Override.TPM, MonthlyTokens: o.Override.MonthlyTokens,
		MonthlyCost: o.Override.MonthlyCost, MonthlyCostSoft: o.Override.MonthlyCostSoft}
}

// Subject checks and normalises a subject: a key must exist (its id or
// fgw-<id> prefix; limits are set on its lineage), an app is "team/app"
// of a known team, a team must be known. For delete (mustExist false) a
// key that is gone is still accepted, so its override can be removed.
func (a *Admin) Subject(ctx context.Context, s Subject, mustExist bool) (Subject, error) {
	bad := func(format string, args ...any) (Subject, error) {
		return Subject{}, fmt.Errorf("%w: %s", ErrBadSubject, fmt.Sprintf(format, args...))
	}
	knownTeam := func(team string) error {
		ok, err := a.KnownTeam(ctx, team)
		if err != nil {
			return err
		}
		if !ok && mustExist {
			return fmt.Errorf("%w: unknown team %q (not in limits.teams, no identity rule, no key)", ErrBadSubject, team)
		}
		return nil
	}
	switch s.Kind {
	case KindKey:
		sub, found, err := a.KeySubject(ctx, s.ID)
		if err != nil {
			return Subject{}, err
		}
		if !found {
			if mustExist {
				return bad("no key %q", s.ID)
			}
			sub = strings.TrimPrefix(s.ID, "fgw-")
		}
		return Subject{Kind: KindKey, ID: sub}, nil
	case KindApp:
		team, app, ok := strings.Cut(s.ID, "/")
		if !ok || !policy.ValidName(team) || !policy.ValidName(app) {
			return bad("app %q: want team/app, each 1-64 letters, digits, '-', '_' or '.'", s.ID)
		}
		if err := knownTeam(team); err != nil {
			return Subject{}, err
		}
		return s, nil
	case KindTeam:
		if !policy.ValidName(s.ID) {
			return bad("team %q: want 1-64 letters, digits, '-', '_' or '.'", s.ID)
		}
		if err := knownTeam(s.ID); err != nil {
			return Subject{}, err
		}
		return s, nil
	}
	return bad("kind %q: want key, app or team", s.Kind)
}

// Set checks s and merges o into its override.
func (a *Admin) Set(ctx context.Context, s Subject, o Override) (Subject, error) {
	s, err := a.Subject(ctx, s, true)
	if err != nil {
		return s, err
	}
	if o.RPM == nil && o.TPM == nil && o.MonthlyTokens == nil && o.MonthlyCost == nil && o.MonthlyCostSoft == nil {
		return s, fmt.Errorf("%w: give at least one of rpm, tpm, monthly_tokens, monthly_cost_nanos, monthly_cost_soft_nanos", ErrBadSubject)
	}
	for _, p := range []*int64{o.RPM, o.TPM, o.MonthlyTokens, o.MonthlyCost, o.MonthlyCostSoft} {
		if p != nil && *p < 0 {
			return s, fmt.Errorf("%w: limits must not be negative (0 means unlimited)", ErrBadSubject)
		}
	}
	return s, a.Overrides.Set(ctx, s, o)
}

// Delete checks s and removes its override.
func (a *Admin) Delete(ctx context.Context, s Subject) (Subject, error) {
	s, err := a.Subject(ctx, s, false)
	if err != nil {
		return s, err
	}
	return s, a.Overrides.Delete(ctx, s)
}

// List returns every override in its shown form.
func (a *Admin) List(ctx context.Context) ([]OverrideView, error) {
	list, err := a.Overrides.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]OverrideView, 0, len(list))
	for _, o := range list {
		out = append(out, o.View())
	}
	return out, nil
}
