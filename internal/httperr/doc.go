// Package httperr turns errors into OpenAI-shaped HTTP error responses:
// {"error":{"message","type","code"}} with the right status. Msg is safe for
// clients; the wrapped Err is only for logs.
//
// It depends only on the standard library.
package httperr
