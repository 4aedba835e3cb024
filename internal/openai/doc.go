// Package openai knows the client-facing wire format of OpenAI / Azure OpenAI
// requests: which operation a path names, and the few body fields the gateway
// needs (model, stream, stream_options, output caps). It parses only those
// fields and rewrites bodies only when they must change.
//
// It must not depend on other gateway packages except usage (for Kind).
package openai
