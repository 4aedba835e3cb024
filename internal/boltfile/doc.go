// Package boltfile opens the gateway's bbolt files (the embedded store and
// the embedded queue) with errors an operator can act on: a file locked by
// another gateway, or a damaged file, is named with what to do, instead of
// a bare "timeout" or a panic with a stack trace (issue #16).
//
// It depends only on bbolt and the standard library.
package boltfile
