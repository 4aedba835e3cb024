// Package store defines the table contract every piece of gateway state is
// kept behind: partitioned rows with typed properties, ETag-guarded writes and
// single-partition batches, the model of Azure Table Storage.
//
// Implementations live in sub-packages (tables for Azure Table Storage,
// embedded for a local file) and must pass the shared suite in storetest.
// This package must not depend on any implementation or on the rest of the
// gateway.
package store
