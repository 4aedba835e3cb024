// Package embedded is the local implementation of the store contract: one
// bbolt file, one bucket per table, rows ordered by PartitionKey then RowKey.
// It is for development and single-instance use; it enforces the same rules
// as Azure Table Storage (through store/rules) so that code which works here
// also works against Azure.
//
// It must not depend on the Azure SDK or on any other gateway package than
// store and store/rules.
package embedded
