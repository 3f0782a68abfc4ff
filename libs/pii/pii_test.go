package pii

import (
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	for _, tc := range []struct {
		text string
		want string // Mask(text, Find(text))
	}{
		// SSN-like numbers.
		{"ssn 123-45-6789 on file", "ssn [ssn] on file"},
		{"ssn 123 45 6789", "ssn [ssn]"},
		{"ssn:123456789.", "ssn:[ssn]."},
		{"(123-45-6789)", "([ssn])"},
		{"123-45 6789", "123-45 6789"},                                                 // mixed separators
		{"000-12-3456 666-12-3456 912-34-5678", "000-12-3456 666-12-3456 912-34-5678"}, // impossible areas
		{"123-00-4567 123-45-0000", "123-00-4567 123-45-0000"},                         // group 00, serial 0000
		{"order 1234567890", "order 1234567890"},                                       // 10 digits
		{"id 12345678901234", "id 12345678901234"},
		{"A123456789", "A123456789"},
		{"9-123-45-6789", "9-123-45-6789"},
		{"123456789.5", "123456789.5"},
		// Emails.
		{"mail jane.doe+x@example.org today", "mail [email] today"},
		{"Write to J_Smith@mail.school-district.k12.us.", "Write to [email]."},
		{"<a@b.co>", "<[email]>"},
		{"a@b", "a@b"},
		{"@handle and user@ and @x.com", "@handle and user@ and @x.com"},
		{"score 93.5 @ 10am", "score 93.5 @ 10am"},
		// Phones.
		{"call mom at 555-123-4567", "call mom at [phone]"},
		{"(555) 123-4567", "[phone]"},
		{"(555)123-4567", "[phone]"},
		{"555.123.4567 or 555 123 4567", "[phone] or [phone]"},
		{"+1 555 123 4567", "[phone]"},
		{"1-555-123-4567", "[phone]"},
		{"+44 20 7946 0958, ask", "[phone], ask"},
		{"+91 98765 43210", "[phone]"},
		{"+33 1 23 45 67 89", "[phone]"},
		{"+44 (0) 20 7946 0958", "[phone]"},
		{"555-123-4567 x89", "[phone] x89"},
		{"Call 555-123-4567.", "Call [phone]."},
		{"5551234567", "5551234567"}, // 10 bare digits: an id as often as a phone
		{"555-123.4567", "555-123.4567"},
		{"155-123-4567", "155-123-4567"}, // area code starting with 1
		{"+1 234", "+1 234"},
		{"+123456789012345678", "+123456789012345678"}, // too long for E.164
		// Not personal data.
		{"absent 2026-09-01, back 2026-09-03", "absent 2026-09-01, back 2026-09-03"},
		{"at 2026-09-01T12:30:45.123456789Z", "at 2026-09-01T12:30:45.123456789Z"},
		{"12:30:45 - 13:45:00", "12:30:45 - 13:45:00"},
		{"scores 93.5, 88.25 and 100", "scores 93.5, 88.25 and 100"},
		{"id 123e4567-e89b-12d3-a456-426614174000", "id 123e4567-e89b-12d3-a456-426614174000"},
		{"id 12345678-1234-1234-1234-123456789012", "id 12345678-1234-1234-1234-123456789012"},
		{"room 101, period 3", "room 101, period 3"},
		{"v1.2.3 build 2026.09.01", "v1.2.3 build 2026.09.01"},
		{"1,234,567,890 points", "1,234,567,890 points"},
		{"ISBN 978-3-16-148410-0, zip 62704-1234", "ISBN 978-3-16-148410-0, zip 62704-1234"},
		{"card 4111 1111 1111 1111", "card 4111 1111 1111 1111"},
		{"", ""},
		// Several kinds, in order.
		{"a@b.io 555-123-4567 123-45-6789", "[email] [phone] [ssn]"},
		{"invalid \xff utf8 555-123-4567 \xfe", "invalid \xff utf8 [phone] \xfe"},
	} {
		ms := Find(tc.text)
		if got := Mask(tc.text, ms); got != tc.want {
			t.Errorf("Mask(%q) = %q, want %q (matches %v)", tc.text, got, tc.want, ms)
		}
	}
}

func TestFindKinds(t *testing.T) {
	text := "x a@b.io 555-123-4567 123-45-6789"
	want := []Match{{Email, 2, 8}, {Phone, 9, 21}, {SSN, 22, 33}}
	got := Find(text)
	if len(got) != len(want) {
		t.Fatalf("Find = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("match %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestFindDoesNotAllocateWithoutMatches(t *testing.T) {
	for _, s := range []string{"sick, back on 2026-09-01", "93.5", strings.Repeat("no digits here ", 20),
		"sick, back on 2026-09-01 at 10:30, score 93.5", "order 1234567890, room 101"} {
		Find(s) // warm the regexps' machine pools

		if n := testing.AllocsPerRun(100, func() {
			if Find(s) != nil {
				t.Fatal("match")
			}
		}); n != 0 {
			t.Errorf("Find(%q) allocates %v times", s, n)
		}
	}
}

// checkMatches asserts the invariants of Find and Mask on any text.
func checkMatches(t *testing.T, s string) {
	ms := Find(s)
	end := 0
	for _, m := range ms {
		if m.Start < end || m.End <= m.Start || m.End > len(s) {
			t.Fatalf("Find(%q): match %v out of order or range", s, m)
		}
		if m.Kind != SSN && m.Kind != Email && m.Kind != Phone {
			t.Fatalf("Find(%q): kind %q", s, m.Kind)
		}
		end = m.End
	}
	masked := Mask(s, ms)
	n := map[string]int{}
	for _, m := range ms {
		n[s[m.Start:m.End]]++
	}
	for sub, k := range n {
		// Every occurrence of sub was a match: none may be left.
		if strings.Count(s, sub) == k && strings.Contains(masked, sub) {
			t.Fatalf("Mask(%q) = %q still holds %q", s, masked, sub)
		}
	}
}

func FuzzFindMask(f *testing.F) {
	for _, s := range []string{"call 555-123-4567", "a@b.co", "123-45-6789", "+44 20 7946 0958", "2026-09-01", "\xff@\xfe.com",
		"123456789", "(555) 123-4567 x@y.org 123 45 6789", "1-555-123-4567-1"} {
		f.Add(s)
	}
	f.Fuzz(checkMatches)
}

func BenchmarkFind(b *testing.B) {
	for _, bc := range []struct{ name, text string }{
		{"clean", "Absent: sick, doctor's note received on 2026-09-01; score 93.5"},
		{"pii", "Parent asked to call 555-123-4567 or write to jane.doe@example.org about 123-45-6789"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Find(bc.text)
			}
		})
	}
}
