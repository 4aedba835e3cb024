// Package tables is the Azure Table Storage implementation of the store
// contract, on aztables v1.4.1. It maps HTTP failures to the store sentinels
// (404 ErrNotFound, 409 EntityAlreadyExists ErrExists, 412 ErrPrecondition,
// 400/413 ErrInvalid, including the inner status of a failed batch that the
// SDK reports as a 202), checks every rule of store/rules before sending so
// that Azurite's leniency (cross-partition batches, any property name) does
// not hide a request Azure would refuse, and writes explicit EDM types so
// int64, float64, time.Time and []byte read back as the same Go types.
//
// It works around two aztables v1.4.1 bugs with single quotes in keys: it
// builds entity JSON itself (EDMEntity.MarshalJSON doubles quotes in the
// keys of the body), and a pipeline policy escapes quotes in the URLs of
// batch sub-requests (SubmitTransaction does not). The same policy sends
// non-ASCII text as \uXXXX escapes, because Azurite corrupts multi-byte
// characters that straddle a 64 KiB boundary of the request body.
//
// It must not depend on other gateway packages than store and store/rules.
package tables
