package deploy

import (
	"fmt"
	"strconv"
	"strings"
)

// cronField is one field of an NCRONTAB expression.
type cronField struct {
	name     string
	min, max int
	names    []string // names for min, min+1, … (month, day of week)
}

// ncrontab is the six-field format of the Functions timer trigger:
// {second} {minute} {hour} {day} {month} {day-of-week}, in UTC.
var ncrontab = []cronField{
	{name: "second", min: 0, max: 59},
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{name: "day-of-week", min: 0, max: 6, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

// checkNCRONTAB reports whether s is a valid six-field NCRONTAB schedule.
// Each field is a comma list of *, */n, v, v/n, a-b or a-b/n.
func checkNCRONTAB(s string) error {
	fields := strings.Fields(s)
	if len(fields) != len(ncrontab) {
		return fmt.Errorf("%d fields, want 6 ({second} {minute} {hour} {day} {month} {day-of-week})", len(fields))
	}
	for i, f := range fields {
		if err := ncrontab[i].check(f); err != nil {
			return fmt.Errorf("%s field %q: %w", ncrontab[i].name, f, err)
		}
	}
	return nil
}

func (cf cronField) check(field string) error {
	for _, item := range strings.Split(field, ",") {
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 {
				return fmt.Errorf("step %q must be a positive number", step)
			}
		}
		if rng == "*" {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := cf.value(lo)
		if err != nil {
			return err
		}
		if !isRange {
			continue
		}
		b, err := cf.value(hi)
		if err != nil {
			return err
		}
		if a > b {
			return fmt.Errorf("range %s is backwards", rng)
		}
	}
	return nil
}

func (cf cronField) value(s string) (int, error) {
	for i, n := range cf.names {
		if strings.EqualFold(s, n) {
			return cf.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if v < cf.min || v > cf.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", v, cf.min, cf.max)
	}
	return v, nil
}
