// Package storetest is the contract suite every store.Store implementation
// must pass: the embedded file store, and Azure Table Storage (against
// Azurite in CI). Call Run from the implementation's own test.
//
// It checks behaviour only through the store interfaces, so it must not
// depend on any implementation. It uses the standard testing package only.
package storetest
