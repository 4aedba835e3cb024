// Package spoolfile appends JSON lines to a local file durably (written
// and fsynced before Append returns) and reports its size: the on-disk
// spool the usage ledger and the audit trail keep while their store is
// down. Reading a spool back is each owner's own (the ledger replays in
// chunks, the audit trail from a byte offset).
package spoolfile
