// Package tee keeps a copy of what a handler writes to its client, up to
// a limit, while passing every byte and flush on unchanged: the audit
// trail records the response from it and the response cache stores it.
package tee
