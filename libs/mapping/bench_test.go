package mapping

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

// BenchmarkMapCSV maps a generated 200,000-row students export with the sis-a students rules (15 field
// rules: maps, a split, case folding, a concat, constants and a role object).
func BenchmarkMapCSV(b *testing.B) {
	src, err := os.ReadFile("examples/sis-a/rules.yaml")
	if err != nil {
		b.Fatal(err)
	}
	rules, err := Parse(src, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	exp, _ := rules.Export("students")
	const rows = 200_000
	var in bytes.Buffer
	in.WriteString("Student_Number,First_Name,Last_Name,Middle_Name,Grade_Level,School_ID,Email,Homeroom_Teacher,Room,Active\n")
	grades := []string{"K", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}
	for i := range rows {
		fmt.Fprintf(&in, "%d,Given%d,Family%d,,%s,SCH-%02d,Student.%d@students.example.org,Teacher %d,%d,Y\n",
			100000+i, i, i, grades[i%len(grades)], i%40, i, i%500, 100+i%60)
	}
	data := in.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		err := exp.MapCSV("students.csv", bytes.NewReader(data), func(r Row) error {
			if r.Record == nil {
				return fmt.Errorf("line %d: %v", r.Line, r.Errors)
			}
			n++
			return nil
		})
		if err != nil || n != rows {
			b.Fatalf("MapCSV: %v after %d rows", err, n)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
