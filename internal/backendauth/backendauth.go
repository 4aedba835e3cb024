package backendauth

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/foundry-gateway/gateway/internal/config"
)

// Scope is the Entra ID scope of Azure OpenAI / Foundry data-plane calls.
const Scope = "https://cognitiveservices.azure.com/.default"

// Authorizer sets the backend credential on an outbound request.
type Authorizer interface {
	Authorize(ctx context.Context, h http.Header) error
}

// APIKey sends a static key as the api-key header.
type APIKey config.Secret

// Authorize implements [Authorizer].
func (k APIKey) Authorize(_ context.Context, h http.Header) error {
	h.Set("Api-Key", config.Secret(k).Reveal())
	return nil
}

// None sends no credential (a local simulator).
type None struct{}

// Authorize implements [Authorizer].
func (None) Authorize(context.Context, http.Header) error { return nil }

// Token sends "Authorization: Bearer <token>" from an azcore credential,
// cached until refreshBefore its expiry. Safe for concurrent use; one caller
// refreshes while the others keep using the still-valid token.
type Token struct {
	cred          azcore.TokenCredential
	scope         string
	refreshBefore time.Duration
	now           func() time.Time

	mu         sync.Mutex
	tok        azcore.AccessToken
	refreshing bool
}

// NewToken wraps cred. now may be nil (time.Now).
func NewToken(cred azcore.TokenCredential, scope string, now func() time.Time) *Token {
	if now == nil {
		now = time.Now
	}
	return &Token{cred: cred, scope: scope, refreshBefore: 5 * time.Minute, now: now}
}

// Authorize implements [Authorizer].
func (t *Token) Authorize(ctx context.Context, h http.Header) error {
	tok, err := t.token(ctx)
	if err != nil {
		return err
	}
	h.Set("Authorization", "Bearer "+tok)
	return nil
}

func (t *Token) token(ctx context.Context) (string, error) {
	t.mu.Lock()
	now := t.now()
	valid := t.tok.Token != "" && now.Before(t.tok.ExpiresOn)
	fresh := valid && now.Before(t.tok.ExpiresOn.Add(-t.refreshBefore))
	if fresh || (valid && t.refreshing) {
		tok := t.tok.Token
		t.mu.Unlock()
		return tok, nil
	}
	t.refreshing = true
	t.mu.Unlock()

	tok, err := t.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{t.scope}})

	t.mu.Lock()
	defer t.mu.Unlock()
	t.refreshing = false
	if err != nil {
		if valid { // keep using the old token until it really expires
			return t.tok.Token, nil
		}
		return "", fmt.Errorf("backend token: %w", err)
	}
	t.tok = tok
	return tok.Token, nil
}

// Credential builds the Entra ID credential for a user-assigned identity
// (clientID set) or, with no client id, DefaultAzureCredential (managed
// identity in Azure, az/azd login on a laptop).
func Credential(clientID string) (azcore.TokenCredential, error) {
	if clientID != "" {
		return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(clientID)})
	}
	return azidentity.NewDefaultAzureCredential(nil)
}

// For returns the authorizer a configured backend asks for.
func For(b config.Backend) (Authorizer, error) {
	switch {
	case b.Auth.APIKeyEnv != "":
		return APIKey(b.Auth.APIKey), nil
	case b.Auth.ManagedIdentity:
		cred, err := Credential(b.Auth.ClientID)
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", b.Name, err)
		}
		return NewToken(cred, Scope, nil), nil
	default:
		return None{}, nil
	}
}
