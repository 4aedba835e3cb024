// Package blob stores and fetches blobs by name in one container: whole
// byte slices written and read at once, for payloads too large for a table
// row or a queue message (the claim check of large jobs, later Batch API
// files and audit records).
//
// Two implementations share one contract (blob_test.go runs it against
// both): [Dir], files under a local directory written atomically (the
// embedded mode of `handler serve`), and [Azure], a Blob Storage container
// reached with a connection string or a service URL and an Entra ID
// credential (managed identity in Azure, `az login` on a laptop).
//
// Consumers declare the methods they use as their own small interface. The
// package depends on the Azure Blob SDK and the standard library only; it
// must not import other gateway packages.
package blob
