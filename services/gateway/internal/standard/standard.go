// Package standard holds what the readers of the ed-tech standards (Caliper, xAPI) share.
package standard

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// DurationSeconds reads an ISO 8601 duration of hours, minutes and seconds (PT1H12M27.5S); 0 for an
// empty one or another form (days, months).
func DurationSeconds(d string) int64 {
	rest, ok := strings.CutPrefix(d, "PT")
	if !ok {
		return 0
	}
	var total float64
	for rest != "" {
		i := strings.IndexAny(rest, "HMS")
		if i <= 0 {
			return 0
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil || n < 0 {
			return 0
		}
		total += n * map[byte]float64{'H': 3600, 'M': 60, 'S': 1}[rest[i]]
		rest = rest[i+1:]
	}
	return int64(total)
}

// Strings adds extensions to into as strings: a string value as it is, any other value as its compact
// JSON.
func Strings(into map[string]string, ext map[string]json.RawMessage) {
	for k, v := range ext {
		var s string
		if json.Unmarshal(v, &s) == nil {
			into[k] = s
			continue
		}
		var b bytes.Buffer
		if json.Compact(&b, v) != nil {
			into[k] = string(v)
			continue
		}
		into[k] = b.String() // one line
	}
}
