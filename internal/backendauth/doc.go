// Package backendauth attaches the gateway's own credential to backend
// requests: an API key from the environment, or an Entra ID token (managed
// identity locally falling back to developer credentials) for scope
// https://cognitiveservices.azure.com/.default, cached and refreshed before
// it expires. Client credentials never reach a backend.
//
// It depends on config and the Azure SDK only.
package backendauth
