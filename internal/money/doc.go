// Package money is exact currency arithmetic for the usage ledger: amounts
// as integer billionths of a currency unit (Nanos), costs of token counts at
// a price per million tokens, fixed-precision decimal text without float
// noise, and the ISO 4217 currency codes a price may name.
package money
