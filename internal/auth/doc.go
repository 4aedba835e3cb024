// Package auth authenticates gateway clients. API keys are random secrets
// shown once at creation and stored only as SHA-256 hashes in the Keys table
// with their team and app; lookups are cached per instance for a bounded TTL,
// which is also how long a revoked key can keep working on an instance.
//
// Beside keys it accepts JWT bearer tokens from configured OIDC issuers
// (Entra ID or any IdP), validated against the issuer's JWKS, and maps their
// claims to a team and app (oidc.go).
//
// It depends on store (the table contract), config, httperr and golang-jwt,
// never on the proxy or routing.
package auth
