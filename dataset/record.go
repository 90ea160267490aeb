package dataset

import (
	"strings"

	"github.com/metaids/metaids/schemas"
)

// Benign is the canonical label of normal traffic, whatever the source
// wrote ("BENIGN", "Benign", "benign"); it is class 0 of every model.
const Benign = schemas.VerdictBenign

// Unlabelled is the Label of a flow whose source gives no usable verdict:
// Stratosphere's Background and LUFlow's outlier. Such flows still train the
// next-flow predictor and give the LSTM its context, but no classifier.
const Unlabelled = ""

// Format names the file formats the readers understand.
type Format string

// Formats.
const (
	FormatCIC       Format = "cic"       // CICFlowMeter CSV
	FormatZeek      Format = "zeek"      // Zeek conn.log TSV, Stratosphere labels
	FormatLUFlow    Format = "luflow"    // Cisco Joy CSV of the LUFlow dataset
	FormatSynthetic Format = "synthetic" // integration.NewTraffic
)

// Record is one labelled flow.
type Record struct {
	Flow schemas.Flow
	// Label is Benign, an attack family name, or Unlabelled.
	Label string
	// RawLabel is the label as the source wrote it, for reports
	// ("Background", "outlier", "Malicious").
	RawLabel string
	// Format is the format of the file the flow came from.
	Format Format
}

// canonicalLabel maps the benign spellings of the datasets to Benign and
// trims the rest.
func canonicalLabel(s string) string {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "benign", "normal":
		return Benign
	}
	return s
}
