// Package proxy forwards one inference call to a backend deployment and
// streams the answer back untouched: it tries the route's targets in order
// until one answers (failover only before the first byte reaches the
// client), attaches the backend credential, copies the response with a
// pooled buffer, flushes every SSE write, and counts usage beside the bytes
// it forwards. When no other target is eligible it waits out a short
// retry-after (or a jittered backoff after a 5xx) and tries the same
// target again, still before the first byte.
//
// It depends on route (targets), usage (counting) and openai (wire rules);
// it knows nothing about clients' keys, quotas or storage.
package proxy
