// Package azurite runs the Azurite emulators for tests: one azurite-table
// (or azurite-blob) process on 127.0.0.1 with a free port and its data in a
// temporary directory, stopped (with its whole process group) when the test
// ends. Tests of the store, quota, usage and e2e packages share the table
// service; the blob package's contract tests use the blob service.
//
// The binaries come from AZURITE_TABLE_BIN (and AZURITE_BLOB_BIN, default:
// azurite-blob beside it) or from .tools/node_modules/.bin next to the
// module's go.mod (installed by `make tools`). A missing binary
// fails the test; it never skips, so CI cannot silently lose the store tests.
//
// It depends only on the standard library; it must not import gateway
// packages.
package azurite
