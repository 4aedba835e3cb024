// Package boltfile opens the gateway's bbolt files (the embedded store and
// the embedded queue) and keeps them cheap to hold: errors an operator can
// act on (a file locked by another gateway, or a damaged file, is named with
// what to do, instead of a bare "timeout" or a panic with a stack trace,
// issue #16), and a bound on the RSS of the file's memory map (Release and
// Meter, issue #15).
//
// It depends only on bbolt and the standard library.
package boltfile
