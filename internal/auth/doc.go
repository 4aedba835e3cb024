// Package auth authenticates gateway clients. API keys are random secrets
// shown once at creation and stored only as SHA-256 hashes in the Keys table
// with their team and app; lookups are cached per instance for a bounded TTL,
// which is also how long a revoked key can keep working on an instance.
//
// It depends on store (the table contract) and httperr only, never on the
// proxy or routing.
package auth
