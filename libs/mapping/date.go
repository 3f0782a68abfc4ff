package mapping

import (
	"fmt"
	"strings"
	"time"
)

// dateToken is one part of a date layout.
type dateToken struct {
	unit    byte // 'Y', 'M', 'D', or 0 for a literal
	min     int  // digits: at least
	max     int  // digits: at most
	literal string
}

// dateLayout reads dates such as 03/07/2015 (layout MM/DD/YYYY).
type dateLayout struct {
	text   string
	tokens []dateToken
	yy     bool // the year has two digits
}

// parseLayout compiles a date layout of the tokens YYYY, YY, MM, M, DD and D; any character that is not
// a letter is a literal that must appear as it is.
func parseLayout(s string) (*dateLayout, error) {
	l := &dateLayout{text: s}
	seen := map[byte]bool{}
	for i := 0; i < len(s); {
		c := s[i]
		if !isLetter(c) {
			j := i
			for j < len(s) && !isLetter(s[j]) {
				j++
			}
			l.tokens = append(l.tokens, dateToken{literal: s[i:j]})
			i = j
			continue
		}
		j := i
		for j < len(s) && s[j] == c {
			j++
		}
		run := s[i:j]
		var tok dateToken
		switch run {
		case "YYYY":
			tok = dateToken{unit: 'Y', min: 4, max: 4}
		case "YY":
			tok = dateToken{unit: 'Y', min: 2, max: 2}
			l.yy = true
		case "MM", "DD":
			tok = dateToken{unit: c, min: 2, max: 2}
		case "M", "D":
			tok = dateToken{unit: c, min: 1, max: 2}
		default:
			return nil, fmt.Errorf("date layout %q: %q is not one of YYYY, YY, MM, M, DD, D", s, run)
		}
		if seen[c] {
			return nil, fmt.Errorf("date layout %q has %c twice", s, c)
		}
		seen[c] = true
		if n := len(l.tokens); n > 0 && l.tokens[n-1].unit != 0 && (tok.min != tok.max || l.tokens[n-1].min != l.tokens[n-1].max) {
			return nil, fmt.Errorf("date layout %q: M and D need a separator next to other digits", s)
		}
		l.tokens = append(l.tokens, tok)
		i = j
	}
	if !seen['Y'] || !seen['M'] || !seen['D'] {
		return nil, fmt.Errorf("date layout %q needs a year, a month and a day (YYYY or YY, MM or M, DD or D)", s)
	}
	return l, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// parse reads a date in the layout; ok is false when v is not such a date.
func (l *dateLayout) parse(v string) (time.Time, bool) {
	var y, m, d int
	for _, tok := range l.tokens {
		if tok.unit == 0 {
			rest, ok := strings.CutPrefix(v, tok.literal)
			if !ok {
				return time.Time{}, false
			}
			v = rest
			continue
		}
		n, digits := 0, 0
		for digits < tok.max && digits < len(v) && v[digits] >= '0' && v[digits] <= '9' {
			n = n*10 + int(v[digits]-'0')
			digits++
		}
		if digits < tok.min {
			return time.Time{}, false
		}
		v = v[digits:]
		switch tok.unit {
		case 'Y':
			y = n
		case 'M':
			m = n
		case 'D':
			d = n
		}
	}
	if v != "" {
		return time.Time{}, false
	}
	if l.yy {
		// Two-digit years: 00-69 are 2000-2069, 70-99 are 1970-1999.
		if y < 70 {
			y += 2000
		} else {
			y += 1900
		}
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if y < 1 || t.Year() != y || t.Month() != time.Month(m) || t.Day() != d {
		return time.Time{}, false
	}
	return t, true
}
