package train

import (
	"math"
	"strconv"
)

// Metric is a report number that may be undefined (a recall over no flows):
// NaN, written as null in JSON, which has no NaN.
type Metric float64

// MarshalJSON writes m, or null when it is not finite.
func (m Metric) MarshalJSON() ([]byte, error) {
	f := float64(m)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 6, 64), nil
}

// UnmarshalJSON reads a number, or null as NaN.
func (m *Metric) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*m = Metric(math.NaN())
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	*m = Metric(f)
	return err
}
