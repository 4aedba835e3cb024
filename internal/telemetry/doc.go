// Package telemetry sends the gateway's requests, backend dependencies,
// token metrics and warnings to Application Insights, and carries W3C trace
// context (traceparent) from clients to backends.
//
// It never slows or fails a request: items go into a bounded buffer that
// drops the oldest item (and counts it) when full, and a single pump feeds
// the Application Insights SDK, whose HTTP calls have a timeout. It depends
// only on the SDK and the standard library; what to record is the caller's
// business.
package telemetry
