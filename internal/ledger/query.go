package ledger

import (
	"fmt"
	"time"
)

// ParseQuery parses the report options the CLI and the HTTP endpoint share:
// dates yyyy-mm-dd (default: the last 7 days up to today, UTC), by (default
// team) and format (default json).
func ParseQuery(from, to, by, format string, now time.Time) (Query, string, error) {
	var q Query
	var err error
	today := now.UTC().Truncate(24 * time.Hour)
	q.To = today
	if to != "" {
		if q.To, err = ParseDate(to); err != nil {
			return q, "", err
		}
	}
	q.From = q.To.AddDate(0, 0, -6)
	if from != "" {
		if q.From, err = ParseDate(from); err != nil {
			return q, "", err
		}
	}
	if by == "" {
		by = ByTeam
	}
	if q.By, err = ParseBy(by); err != nil {
		return q, "", err
	}
	switch format {
	case "":
		format = FormatJSON
	case FormatJSON, FormatCSV, FormatTable:
	default:
		return q, "", fmt.Errorf("%w: format must be json, csv or table", ErrBadQuery)
	}
	return q, format, nil
}
