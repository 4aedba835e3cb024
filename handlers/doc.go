// Package handlers is the gateway's HTTP surface: the echo routes the Azure
// Functions host proxies to (OpenAI v1 and Azure deployment paths), the
// Functions readiness probe and payload-protocol invocations of the timer
// functions, and the one adapter that turns errors into OpenAI-shaped
// responses. Handlers stay thin: decode, call internal packages, encode.
//
// It wires internal packages through small interfaces declared here; no
// business logic (quota math, routing, usage parsing) lives in this package.
package handlers
