// Package rules holds the Azure Table Storage rules that every store
// implementation enforces before it writes: key characters and length,
// property names, types, sizes and counts, entity size, table names, query
// shape and batch limits. Both store/embedded and store/tables call it, so
// code that passes against the local file store also passes against Azure.
//
// Where Azure is looser than these rules (empty keys, NaN, years before
// 1601 that only some clients reject) the rules are stricter, never looser.
// Every error wraps store.ErrInvalid.
//
// It depends only on package store and the standard library.
package rules
