// Package test holds the end-to-end tests: the real `handler` binary (built
// once per run) started as `handler sim` and `handler serve`, driven by the
// official openai-go client, and the Functions-host protocol test driven by
// the repository's host.json and function.json files.
package test
