package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/foundry-gateway/gateway/internal/policy"
)

// IdentityConfig turns on JWT bearer tokens from OIDC issuers (Entra ID
// tenants or any other IdP) beside API keys, and maps the callers to a team
// and an app. Zero value: no issuers, only API keys are accepted (issue #3).
type IdentityConfig struct {
	// Issuers whose tokens are accepted. Empty disables JWT authentication.
	Issuers []IssuerConfig `yaml:"issuers" json:"issuers"`
	// Rules map a verified token to a team and an app; the first matching
	// rule wins. A token no rule matches is refused with 403.
	Rules []IdentityRule `yaml:"rules" json:"rules"`
	// ClockSkew tolerated on exp and nbf. Default 60s.
	ClockSkew Duration `yaml:"clockSkew" json:"clockSkew"`
	// JWKSRefreshMin is the shortest time between two JWKS fetches for one
	// issuer, so tokens with unknown key ids cannot hammer the IdP. It is
	// also how long a new signing key may be refused after an IdP fetch
	// failed. Default 30s.
	JWKSRefreshMin Duration `yaml:"jwksRefreshMin" json:"jwksRefreshMin"`
}

// IssuerConfig is one trusted OIDC issuer.
type IssuerConfig struct {
	// Issuer is the exact "iss" of its tokens, e.g.
	// https://login.microsoftonline.com/<tenant>/v2.0. Its JWKS is found
	// through <Issuer>/.well-known/openid-configuration. Required; https
	// unless the host is loopback.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Audience the token's "aud" must contain, e.g. api://foundry-gateway.
	// One of Audience and Audiences is required.
	Audience string `yaml:"audience" json:"audience"`
	// Audiences adds more accepted audiences (any one suffices).
	Audiences []string `yaml:"audiences" json:"audiences"`
}

// AllAudiences returns Audience and Audiences together.
func (i IssuerConfig) AllAudiences() []string {
	var out []string
	if i.Audience != "" {
		out = append(out, i.Audience)
	}
	for _, a := range i.Audiences {
		if a != "" {
			out = append(out, a)
		}
	}
	return out
}

// IdentityRule maps tokens to a team and an app.
type IdentityRule struct {
	// Issuer limits the rule to one configured issuer. Empty: any issuer.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Claims must all match: a string claim equals the value, an array
	// claim (roles, groups) contains it. Empty only with Issuer set, which
	// then maps every token of that issuer.
	Claims map[string]string `yaml:"claims" json:"claims"`
	// Team the caller is charged to. Required.
	Team string `yaml:"team" json:"team"`
	// App of the caller. Exactly one of App and AppFromClaim is required.
	App string `yaml:"app" json:"app"`
	// AppFromClaim takes the app from a string claim (e.g. azp or appid);
	// a token without it does not match the rule.
	AppFromClaim string `yaml:"appFromClaim" json:"appFromClaim"`
	// Scope of the mapped callers (models, regions, class, maxOutputTokens,
	// overCap, maxN, admin), written inline in the rule. Zero: every model
	// and region, interactive, no caps, no admin.
	policy.Scope `yaml:",inline"`
}

func (c *IdentityConfig) applyDefaults() {
	if c.ClockSkew == 0 {
		c.ClockSkew = Duration(60 * time.Second)
	}
	if c.JWKSRefreshMin == 0 {
		c.JWKSRefreshMin = Duration(30 * time.Second)
	}
}

func (c *IdentityConfig) validate() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.ClockSkew < 0 || c.ClockSkew.D() > 10*time.Minute {
		bad("identity.clockSkew %v: must be between 0 and 10m", c.ClockSkew.D())
	}
	if c.JWKSRefreshMin < 0 {
		bad("identity.jwksRefreshMin %v: must not be negative", c.JWKSRefreshMin.D())
	}
	if len(c.Rules) > 0 && len(c.Issuers) == 0 {
		bad("identity.rules: set without identity.issuers")
	}
	if len(c.Issuers) > 0 && len(c.Rules) == 0 {
		bad("identity.issuers: set without identity.rules, every token would be refused")
	}
	issuers := map[string]bool{}
	for i, is := range c.Issuers {
		if issuers[is.Issuer] {
			bad("identity.issuers[%d]: duplicate issuer %q", i, is.Issuer)
		}
		issuers[is.Issuer] = true
		if err := checkIssuerURL(is.Issuer); err != nil {
			bad("identity.issuers[%d]: issuer %q: %v", i, is.Issuer, err)
		}
		if len(is.AllAudiences()) == 0 {
			bad("identity.issuers[%d]: audience is required", i)
		}
	}
	for i, r := range c.Rules {
		if r.Issuer != "" && !issuers[r.Issuer] {
			bad("identity.rules[%d]: issuer %q is not in identity.issuers", i, r.Issuer)
		}
		if len(r.Claims) == 0 && r.Issuer == "" {
			bad("identity.rules[%d]: needs claims or an issuer (a rule matching every token of every issuer is refused)", i)
		}
		for k, v := range r.Claims {
			if k == "" || v == "" {
				bad("identity.rules[%d]: claim names and values must not be empty", i)
			}
		}
		if r.Team == "" {
			bad("identity.rules[%d]: team is required", i)
		}
		if (r.App == "") == (r.AppFromClaim == "") {
			bad("identity.rules[%d]: needs exactly one of app and appFromClaim", i)
		}
		if err := r.Scope.Validate(); err != nil {
			bad("identity.rules[%d]: %v", i, err)
		}
	}
	return errs
}

// checkIssuerURL requires an absolute https URL (http only on loopback,
// for tests and local IdPs) without query or fragment.
func checkIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must be an absolute URL without query or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return errors.New("must use https (http only on loopback)")
		}
	default:
		return errors.New("must use https")
	}
	return nil
}
