// Package pii finds personal data where none is expected: SSN-like numbers, email addresses and phone
// numbers in free text (an attendance reason, a grade comment), and masks them.
//
// Detection is lexical (RE2 patterns checked by hand-written rules), tuned against false positives in
// the text ed-tech records carry: dates (2026-09-01), times, decimal scores (93.5), ISO timestamps,
// UUIDs and short numbers are not matched, nor are 10 bare digits (an id as often as a phone number).
// Names and postal addresses are not detected: no pattern finds them reliably.
package pii

import (
	"regexp"
	"slices"
	"strings"
)

// Kind is what a match looks like.
type Kind string

// Kinds.
const (
	SSN   Kind = "ssn"
	Email Kind = "email"
	Phone Kind = "phone"
)

// Match is one finding: text[Start:End] looks like Kind. Offsets are in bytes.
type Match struct {
	Kind       Kind
	Start, End int
}

// minDigits is the fewest digits any number this package matches holds (an SSN; an international phone
// number has a country code and at least 8 more digits); a text with fewer and no '@' holds nothing, and
// the test costs no regexp work: a date alone (2026-09-01) has 8.
const minDigits = 9

var (
	// ssnRe: NNN-NN-NNNN or NNN NN NNNN (the same separator twice, checked in code).
	ssnRe = regexp.MustCompile(`\d{3}([- ])\d{2}([- ])\d{4}`)
	// emailRe: local@domain.tld, the common subset of RFC 5322 addresses (no quoted local parts, no IP
	// literals).
	emailRe = regexp.MustCompile(`[A-Za-z0-9!#$%&'*+/=?^_{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_{|}~-]+)*@` +
		`(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}`)
	// nanpRe: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567, with an optional +1 or 1 before.
	nanpRe = regexp.MustCompile(`(?:\+?1[ .-]?)?(?:\(\d{3}\) ?\d{3}([ .-])\d{4}|\d{3}([ .-])\d{3}([ .-])\d{4})`)
	// intlRe: +CC followed by groups of digits separated by single spaces, dots or dashes (digits counted
	// in code: 9 to 15 in all, E.164's bound, so a country code and 8 or more digits).
	intlRe = regexp.MustCompile(`\+[1-9]\d*(?:[ .-]?\(?\d+\)?)*`)
)

// Find returns the matches in s, in order and not overlapping (where candidates overlap, the one that
// starts first wins, then the longest). It returns nil, without allocating, when s holds none.
func Find(s string) []Match {
	if !worthScanning(s) {
		return nil
	}
	var ms []Match
	if strings.IndexByte(s, '@') >= 0 {
		for _, loc := range emailRe.FindAllStringIndex(s, -1) {
			start := loc[0]
			for start < loc[1] && s[start] == '.' { // a sentence's full stop before the address
				start++
			}
			if start > 0 && (isAlnum(s[start-1]) || s[start-1] == '@') {
				continue
			}
			ms = append(ms, Match{Email, start, loc[1]})
		}
	}
	for _, loc := range ssnRe.FindAllStringSubmatchIndex(s, -1) {
		if s[loc[2]] != s[loc[4]] || !bounded(s, loc[0], loc[1]) {
			continue
		}
		if validSSN(s[loc[0]:loc[0]+3], s[loc[0]+4:loc[0]+6], s[loc[0]+7:loc[1]]) {
			ms = append(ms, Match{SSN, loc[0], loc[1]})
		}
	}
	for start := 0; start < len(s); {
		if !isDigit(s[start]) {
			start++
			continue
		}
		end := start + 1
		for end < len(s) && isDigit(s[end]) {
			end++
		}
		if d := s[start:end]; len(d) == 9 && bounded(s, start, end) && validSSN(d[:3], d[3:5], d[5:]) {
			ms = append(ms, Match{SSN, start, end})
		}
		start = end
	}
	for _, loc := range nanpRe.FindAllStringSubmatchIndex(s, -1) {
		if loc[6] >= 0 && s[loc[4]] != s[loc[6]] { // 555-123.4567
			continue
		}
		if !bounded(s, loc[0], loc[1]) || !validNANP(s[loc[0]:loc[1]]) {
			continue
		}
		ms = append(ms, Match{Phone, loc[0], loc[1]})
	}
	if strings.IndexByte(s, '+') < 0 {
		return resolve(ms)
	}
	for _, loc := range intlRe.FindAllStringIndex(s, -1) {
		start, end := loc[0], trimIntl(s, loc[0], loc[1])
		if n := digits(s[start:end]); n < 9 || n > 15 || !bounded(s, start, end) {
			continue
		}
		ms = append(ms, Match{Phone, start, end})
	}
	return resolve(ms)
}

// worthScanning is the fast path: without an '@' a text needs at least minDigits digits to hold anything.
func worthScanning(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '@':
			return true
		case c >= '0' && c <= '9':
			if n++; n >= minDigits {
				return true
			}
		}
	}
	return false
}

// resolve orders the candidates and drops those overlapping an earlier (or, at the same start, a longer)
// one.
func resolve(ms []Match) []Match {
	if len(ms) == 0 {
		return nil
	}
	slices.SortFunc(ms, func(a, b Match) int {
		if a.Start != b.Start {
			return a.Start - b.Start
		}
		return b.End - a.End
	})
	out := ms[:1]
	for _, m := range ms[1:] {
		if m.Start >= out[len(out)-1].End {
			out = append(out, m)
		}
	}
	return out
}

// Mask returns s with each match replaced by its kind in brackets: "[ssn]", "[email]" or "[phone]".
// ms must be in order and not overlap, as Find returns them; matches out of range are ignored.
func Mask(s string, ms []Match) string {
	if len(ms) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	at := 0
	for _, m := range ms {
		if m.Start < at || m.End > len(s) || m.Start > m.End {
			continue
		}
		b.WriteString(s[at:m.Start])
		b.WriteString("[" + string(m.Kind) + "]")
		at = m.End
	}
	b.WriteString(s[at:])
	return b.String()
}

// bounded reports whether s[start:end] stands alone: not glued to letters or digits, and not a piece of
// a longer number such as a date, a decimal or a longer dashed code (9-123-45-6789, 123-45-6789.5).
func bounded(s string, start, end int) bool {
	if start > 0 {
		c := s[start-1]
		if isAlnum(c) || c == '+' || c == '_' {
			return false
		}
		if (c == '-' || c == '.' || c == '/' || c == ':' || c == ',') && start > 1 && isDigit(s[start-2]) {
			return false
		}
	}
	if end < len(s) {
		c := s[end]
		if isAlnum(c) || c == '_' {
			return false
		}
		if (c == '-' || c == '.' || c == '/' || c == ':' || c == ',') && end+1 < len(s) && isDigit(s[end+1]) {
			return false
		}
	}
	return true
}

// validSSN rejects numbers the SSA never issues: area 000, 666 or 900-999, group 00, serial 0000.
func validSSN(area, group, serial string) bool {
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// validNANP checks the area code of a North American number: its first digit is 2-9.
func validNANP(m string) bool {
	i := 0
	if strings.HasPrefix(m, "+") {
		i = 2 // +1
	} else if d := digits(m); d == 11 {
		i = 1 // 1 555 ...
	}
	for ; i < len(m); i++ {
		if isDigit(m[i]) {
			return m[i] >= '2'
		}
	}
	return false
}

// trimIntl drops what intlRe may take beyond the number's last digit (a separator, an unclosed
// parenthesis).
func trimIntl(s string, start, end int) int {
	for end > start && !isDigit(s[end-1]) && s[end-1] != ')' {
		end--
	}
	if strings.Count(s[start:end], "(") != strings.Count(s[start:end], ")") {
		if i := strings.LastIndexAny(s[start:end], "()"); i >= 0 {
			end = trimIntl(s, start, start+i)
		}
	}
	return end
}

func digits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
		}
	}
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' }
