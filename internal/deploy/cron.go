package deploy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
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
	_, err := ParseNCRONTAB(s)
	return err
}

// Schedule is a parsed six-field NCRONTAB expression, in UTC.
type Schedule struct {
	// sets[i][v] is true when value v matches field i.
	sets [6][]bool
}

// ParseNCRONTAB parses the six-field NCRONTAB format of the Functions timer
// trigger: {second} {minute} {hour} {day} {month} {day-of-week}. Each field
// is a comma list of *, */n, v, v/n, a-b or a-b/n; months and days of the
// week may be names (JAN, SUN).
func ParseNCRONTAB(s string) (Schedule, error) {
	var sch Schedule
	fields := strings.Fields(s)
	if len(fields) != len(ncrontab) {
		return sch, fmt.Errorf("%d fields, want 6 ({second} {minute} {hour} {day} {month} {day-of-week})", len(fields))
	}
	for i, f := range fields {
		set, err := ncrontab[i].parse(f)
		if err != nil {
			return sch, fmt.Errorf("%s field %q: %w", ncrontab[i].name, f, err)
		}
		sch.sets[i] = set
	}
	return sch, nil
}

// Next returns the first instant strictly after t (truncated to the
// second, in UTC) that the schedule matches, or the zero time when none
// comes within five years (e.g. 31 February). As in cron, day of month and
// day of week must both match when both are restricted.
func (s Schedule) Next(t time.Time) time.Time {
	t = t.UTC().Truncate(time.Second).Add(time.Second)
	end := t.AddDate(5, 0, 0)
	for t.Before(end) {
		switch {
		case !s.sets[4][int(t.Month())]:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !s.sets[3][t.Day()] || !s.sets[5][int(t.Weekday())]:
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		case !s.sets[2][t.Hour()]:
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, time.UTC)
		case !s.sets[1][t.Minute()]:
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute()+1, 0, 0, time.UTC)
		case !s.sets[0][t.Second()]:
			t = t.Add(time.Second)
		default:
			return t
		}
	}
	return time.Time{}
}

// parse returns the values field matches, indexed by value.
func (cf cronField) parse(field string) ([]bool, error) {
	set := make([]bool, cf.max+1)
	for _, item := range strings.Split(field, ",") {
		rng, step, hasStep := strings.Cut(item, "/")
		n := 1
		if hasStep {
			var err error
			n, err = strconv.Atoi(step)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("step %q must be a positive number", step)
			}
		}
		lo, hi := cf.min, cf.max
		if rng != "*" {
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = cf.value(a); err != nil {
				return nil, err
			}
			hi = lo
			if isRange {
				if hi, err = cf.value(b); err != nil {
					return nil, err
				}
				if lo > hi {
					return nil, fmt.Errorf("range %s is backwards", rng)
				}
			} else if hasStep {
				hi = cf.max // v/n: from v to the end in steps of n
			}
		}
		for v := lo; v <= hi; v += n {
			set[v] = true
		}
	}
	return set, nil
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
