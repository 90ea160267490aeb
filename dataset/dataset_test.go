package dataset

import (
	"bytes"
	"compress/gzip"
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metaids/metaids/features"
	"github.com/metaids/metaids/schemas"
)

func mustLoad(t *testing.T, patterns ...string) ([]Record, Stats) {
	t.Helper()
	recs, st, err := Load(patterns, DefaultConfig())
	if err != nil {
		t.Fatalf("Load(%v): %v", patterns, err)
	}
	return recs, st
}

func labels(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Label)
	}
	return out
}

func TestReaders(t *testing.T) {
	ns := func(s string) int64 {
		tm, err := time.Parse("2006-01-02 15:04:05.999999", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixNano()
	}
	tests := []struct {
		file       string
		format     Format
		labels     []string
		rejected   map[string]int
		first      schemas.Flow // fields compared: addresses, ports, proto, counters, times
		firstLabel string
	}{
		{
			file:     "cic_small.csv",
			format:   FormatCIC,
			labels:   []string{Benign, Benign, Benign, "DoS Hulk", "DoS Hulk", "Portscan"},
			rejected: map[string]int{"dead_lettered:bad_address": 1},
			first: schemas.Flow{
				SrcAddr: netip.MustParseAddr("192.168.10.5"), DstAddr: netip.MustParseAddr("192.168.10.3"),
				SrcPort: 58181, DstPort: 53, Proto: 17, PktsOut: 2, PktsIn: 2, BytesOut: 70, BytesIn: 102,
				StartNs: ns("2017-07-03 12:00:00"), EndNs: ns("2017-07-03 12:00:00") + 245_000,
			},
		},
		{
			file:   "zeek_small.conn.log",
			format: FormatZeek,
			// The space-joined row keeps its labels; Background is
			// unlabelled; the bad address is rejected as ingest would.
			labels:   []string{Benign, "External-Attack-to-Device", Benign, "External-Attack-to-Device", Unlabelled},
			rejected: map[string]int{"dead_lettered:bad_address": 1},
			first: schemas.Flow{
				SrcAddr: netip.MustParseAddr("147.32.81.167"), DstAddr: netip.MustParseAddr("40.74.108.123"),
				SrcPort: 62771, DstPort: 443, Proto: 6, PktsOut: 14, PktsIn: 16, BytesOut: 1016, BytesIn: 1226,
				StartNs: 1655071198444458000, EndNs: 1655071198444458000 + 1135424000,
			},
		},
		{
			file:   "luflow_small.csv",
			format: FormatLUFlow,
			labels: []string{"malicious", Unlabelled, Benign, Benign},
			first: schemas.Flow{
				SrcAddr: netip.MustParseAddr("2001:db8::b8e3"), DstAddr: netip.MustParseAddr("fd00::312"),
				SrcPort: 56965, DstPort: 445, Proto: 6, BytesOut: 270, BytesIn: 191, PktsOut: 7, PktsIn: 6,
				StartNs: 1594168228968772000, EndNs: 1594168229367522000,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			recs, st := mustLoad(t, filepath.Join("testdata", tc.file))
			if got := labels(recs); !slices.Equal(got, tc.labels) {
				t.Errorf("labels = %q, want %q", got, tc.labels)
			}
			if len(st.Rejected) != len(tc.rejected) {
				t.Errorf("rejected = %v, want %v", st.Rejected, tc.rejected)
			}
			for k, v := range tc.rejected {
				if st.Rejected[k] != v {
					t.Errorf("rejected[%s] = %d, want %d", k, st.Rejected[k], v)
				}
			}
			if st.Flows != len(recs) || st.Files != 1 {
				t.Errorf("stats = %+v, want %d flows from 1 file", st, len(recs))
			}
			for _, r := range recs {
				if r.Format != tc.format {
					t.Fatalf("format = %q, want %q", r.Format, tc.format)
				}
			}
			f := recs[0].Flow
			want := tc.first
			f.TCPFlags, f.Service, f.Source = 0, "", schemas.Coord{}
			if f != want {
				t.Errorf("first flow = %+v\nwant %+v", f, want)
			}
			if src := recs[0].Flow.Source; src.Topic != tc.file || src.Offset < 2 {
				t.Errorf("first flow's source = %+v, want topic %s and its line", src, tc.file)
			}
		})
	}
}

func TestLUFlowRepairsTimestamps(t *testing.T) {
	recs, _ := mustLoad(t, "testdata/luflow_small.csv")
	// 159416823142178 lost a trailing zero: right-padding to 16 digits
	// puts the start 61 µs before the end, as its duration says.
	r := recs[1]
	if got, want := r.Flow.EndNs-r.Flow.StartNs, int64(59_000); got != want {
		t.Errorf("duration of the short-timestamp row = %d ns, want %d", got, want)
	}
	if r.Flow.SrcPort != 0 || r.Flow.DstPort != 0 || r.Flow.Proto != 1 {
		t.Errorf("ICMP row = %+v, want ports 0 and proto 1", r.Flow)
	}
	if r.RawLabel != "outlier" {
		t.Errorf("raw label = %q, want outlier", r.RawLabel)
	}
	// The local AS maps to an internal address, the others to external.
	fl := features.Vector(nil, &recs[2].Flow)
	src, _ := features.Default().Index("src_internal")
	dst, _ := features.Default().Index("dst_internal")
	if fl[src] != 1 || fl[dst] != 0 {
		t.Errorf("AS 786 → AS 15169: src_internal %v, dst_internal %v; want 1, 0", fl[src], fl[dst])
	}
}

func TestLUTime(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1594168228968772", 1594168228968772000, false},
		{"159416823142178", 1594168231421780000, false},
		{"15941682", 1594168200000000000, false},
		{"1.594168228968772E15", 1594168228968772000, false},
		{"", 0, true},
		{"abc", 0, true},
		{"12345678901234567", 0, true},
	}
	for _, tc := range tests {
		got, err := luTime([]byte(tc.in))
		if (err != nil) != tc.wantErr || (!tc.wantErr && math.Abs(float64(got-tc.want)) > 1000) {
			t.Errorf("luTime(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestStratosphereLabel(t *testing.T) {
	tests := []struct{ label, detail, want string }{
		{"Benign", "Microsoft", Benign},
		{"Benign", "", Benign},
		{"Background", "", Unlabelled},
		{"Malicious", "External-Attack-to-Device", "External-Attack-to-Device"},
		{"Malicious", "", "malicious"},
		{"", "", Unlabelled},
		{"From-Normal-V42-Jist", "", Benign},
		{"From-Botnet-V42-TCP-CC", "", "From-Botnet-V42-TCP-CC"},
	}
	for _, tc := range tests {
		if got := stratosphereLabel(tc.label, tc.detail); got != tc.want {
			t.Errorf("stratosphereLabel(%q, %q) = %q, want %q", tc.label, tc.detail, got, tc.want)
		}
	}
}

func TestReadGzipAndSniff(t *testing.T) {
	plain, err := os.ReadFile("testdata/cic_small.csv")
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	l, err := NewLoader(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.Read(bytes.NewReader(plain), "x.csv")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Read(&gz, "x.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("plain gave %d records, gzip %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("record %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
	if _, err := l.Read(strings.NewReader("what,is,this\n1,2,3\n"), "y.csv"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("Read(unknown) error = %v, want ErrUnknownFormat", err)
	}
	if _, err := l.Read(strings.NewReader(""), "z.csv"); !errors.Is(err, ErrNoData) {
		t.Errorf("Read(empty) error = %v, want ErrNoData", err)
	}
}

func TestExpand(t *testing.T) {
	all := []string{"testdata/cic_small.csv", "testdata/luflow_small.csv", "testdata/zeek_small.conn.log"}
	tests := []struct {
		name     string
		patterns []string
		want     []string
		wantErr  bool
	}{
		{"directory skips README", []string{"testdata"}, all, false},
		{"glob", []string{"testdata/*.csv"}, all[:2], false},
		{"file twice", []string{"testdata/cic_small.csv", "testdata/cic_small.csv"}, all[:1], false},
		{"directory and glob", []string{"testdata/*.log", "testdata"}, all, false},
		{"missing file", []string{"testdata/nope.csv"}, nil, true},
		{"glob matching nothing", []string{"testdata/*.parquet"}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Expand(tc.patterns)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Expand(%q) error = %v, want error %v", tc.patterns, err, tc.wantErr)
			}
			for i := range got {
				got[i] = filepath.ToSlash(got[i])
			}
			if !tc.wantErr && !slices.Equal(got, tc.want) {
				t.Errorf("Expand(%q) = %q, want %q", tc.patterns, got, tc.want)
			}
		})
	}
}

// rec makes a record of a host at second s.
func rec(host string, s int, label string) Record {
	a := netip.MustParseAddr(host)
	return Record{Label: label, Flow: schemas.Flow{
		StartNs: int64(s) * 1e9, EndNs: int64(s)*1e9 + 1e6, SrcAddr: a,
		DstAddr: netip.MustParseAddr("10.9.9.9"), SrcPort: 40000, DstPort: 443, Proto: 6, PktsOut: 1, BytesOut: 60,
	}}
}

func TestBuildSplitsByTimeWithinClass(t *testing.T) {
	var recs []Record
	// Benign at seconds 0..99, "A" at 50..59 (10 flows), "B" at 0..19,
	// given in reverse order: Build must sort.
	for s := 99; s >= 0; s-- {
		recs = append(recs, rec("10.0.0.1", s, Benign))
	}
	for s := 50; s < 60; s++ {
		recs = append(recs, rec("10.0.0.2", s, "A"))
	}
	for s := 0; s < 20; s++ {
		recs = append(recs, rec("10.0.0.3", s, "B"))
	}
	recs = append(recs, rec("10.0.0.4", 5, Unlabelled))
	cfg := DefaultConfig()
	cfg.Holdout = []string{"B"}
	d, err := Build(recs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{Benign, "A"}; !slices.Equal(d.Classes, want) {
		t.Errorf("classes = %q, want %q", d.Classes, want)
	}
	if want := []string{"B"}; !slices.Equal(d.Holdout, want) {
		t.Errorf("holdout = %q, want %q", d.Holdout, want)
	}
	for i := 1; i < d.Len(); i++ {
		if d.Records[i].Flow.StartNs < d.Records[i-1].Flow.StartNs {
			t.Fatalf("records not in time order at %d", i)
		}
	}
	// 100 benign: 70 train of which the latest 14 validate; 30 test.
	// 10 A: 7 train (latest 1 validates: round(1.4)), 3 test.
	tests := []struct {
		label string
		want  [4]int
		// every flow of a split must be later than every flow of the split before
	}{
		{Benign, [4]int{56, 14, 30, 0}},
		{"A", [4]int{6, 1, 3, 0}},
		{"B", [4]int{0, 0, 0, 20}},
		{"(unlabelled)", [4]int{1, 0, 0, 0}},
	}
	counts := d.Counts()
	for _, tc := range tests {
		if got := counts[tc.label]; got != tc.want {
			t.Errorf("counts[%s] = %v, want %v", tc.label, got, tc.want)
		}
	}
	last := map[string][4]int64{}
	for i, r := range d.Records {
		l := last[r.Label]
		if s := d.Split[i]; s < Holdout {
			for later := s + 1; later < Holdout; later++ {
				if l[later] != 0 {
					t.Errorf("%s flow at %d s in %s comes after a %s flow", r.Label, r.Flow.StartNs/1e9, s, later)
				}
			}
			l[s] = r.Flow.StartNs + 1
		}
		last[r.Label] = l
		wantCls := map[string]int{Benign: 0, "A": 1, "B": -1, Unlabelled: -1}[r.Label]
		if d.Class[i] != wantCls {
			t.Errorf("class of %q = %d, want %d", r.Label, d.Class[i], wantCls)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	recs := []Record{rec("10.0.0.1", 1, Benign)}
	cfg := DefaultConfig()
	cfg.Holdout = []string{"Nope"}
	if _, err := Build(recs, cfg); err == nil || !strings.Contains(err.Error(), "-holdout-family") {
		t.Errorf("Build with an unknown holdout family: error = %v, want one naming -holdout-family", err)
	}
	if _, err := Build(nil, DefaultConfig()); !errors.Is(err, ErrNoData) {
		t.Errorf("Build(nil) error = %v, want ErrNoData", err)
	}
}

func TestStreamsFillDeltaT(t *testing.T) {
	recs := []Record{
		rec("10.0.0.1", 0, Benign), rec("10.0.0.2", 1, Benign), rec("10.0.0.1", 3, Benign),
		rec("10.0.0.1", 10, Benign), rec("10.0.0.2", 2, Benign),
	}
	d, err := Build(recs, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	F, dt := features.NumFeatures, features.IdxDeltaT
	slot := func(s Stream, j int) []float32 {
		var out []float32
		for p := range s.Len() {
			out = append(out, s.X[p*F+j])
		}
		return out
	}
	gaps := func(s Stream) []float32 { return slot(s, dt) }
	all := d.Streams(func(int) bool { return true })
	if len(all) != 2 {
		t.Fatalf("%d streams, want 2", len(all))
	}
	want := []float32{0, features.DeltaT(3e9), features.DeltaT(7e9)}
	if got := gaps(all[0]); !slices.Equal(got, want) {
		t.Errorf("host 1 dt_prev = %v, want %v", got, want)
	}
	if got, want := gaps(all[1]), []float32{0, features.DeltaT(1e9)}; !slices.Equal(got, want) {
		t.Errorf("host 2 dt_prev = %v, want %v", got, want)
	}
	// Every flow of rec goes to the same responder: dst_repeat is 1 from a
	// host's second flow on, and dt_dst equals dt_prev.
	if got, want := slot(all[0], features.IdxDstRepeat), []float32{0, 1, 1}; !slices.Equal(got, want) {
		t.Errorf("host 1 dst_repeat = %v, want %v", got, want)
	}
	if got := slot(all[0], features.IdxDeltaDst); !slices.Equal(got, want) {
		t.Errorf("host 1 dt_dst = %v, want %v", got, want)
	}
	// Dropping the flow at 3 s: the flow at 10 s follows the one at 0 s.
	sub := d.Streams(func(i int) bool { return d.Records[i].Flow.StartNs != 3e9 })
	if got, want := gaps(sub[0]), []float32{0, features.DeltaT(10e9)}; !slices.Equal(got, want) {
		t.Errorf("filtered host 1 dt_prev = %v, want %v", got, want)
	}
	if got, want := slot(sub[0], features.IdxDeltaDst), []float32{0, features.DeltaT(10e9)}; !slices.Equal(got, want) {
		t.Errorf("filtered host 1 dt_dst = %v, want %v", got, want)
	}
	// Every other feature is the flow's own vector.
	for p, i := range all[0].Idx {
		row := all[0].X[p*F : (p+1)*F]
		v := features.Vector(nil, &d.Records[i].Flow)
		for _, j := range []int{dt, features.IdxDstRepeat, features.IdxDeltaDst} {
			v[j] = row[j]
		}
		if !slices.Equal(row, v) {
			t.Errorf("stream row %d = %v, want %v", p, row, v)
		}
	}
	cfg := DefaultConfig()
	cfg.DeltaT = DeltaTOff
	d, err = Build(recs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range d.Streams(func(int) bool { return true }) {
		for _, j := range []int{dt, features.IdxDstRepeat, features.IdxDeltaDst} {
			for _, v := range slot(s, j) {
				if !math.IsNaN(float64(v)) {
					t.Errorf("%s = %v with delta-t off, want NaN", features.Default().Feature(j).Name, v)
				}
			}
		}
	}
}

func TestDeltaTAutoIsOffForCIC(t *testing.T) {
	for _, tc := range []struct {
		file string
		want bool
	}{{"cic_small.csv", false}, {"zeek_small.conn.log", true}, {"luflow_small.csv", true}} {
		recs, _ := mustLoad(t, filepath.Join("testdata", tc.file))
		d, err := Build(recs, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		if d.DeltaT != tc.want {
			t.Errorf("%s: DeltaT = %v, want %v", tc.file, d.DeltaT, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"default", func(*Config) {}, nil},
		{"fractions", func(c *Config) { c.TrainFraction, c.ValFraction = 1.5, 0 }, []string{"-train-fraction", "-val-fraction"}},
		{"delta-t", func(c *Config) { c.DeltaT = "sometimes" }, []string{"-delta-t"}},
		{"holdout benign", func(c *Config) { c.Holdout = []string{"BENIGN"} }, []string{"-holdout-family"}},
		{"local AS", func(c *Config) { c.LUFlowLocalAS = []string{"JANET"} }, []string{"-luflow-local-as"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if (err != nil) != (len(tc.want) > 0) {
				t.Fatalf("Validate() = %v, want errors naming %q", err, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to name %s", err, w)
				}
			}
		})
	}
}

func TestSynthetic(t *testing.T) {
	cfg := DefaultSyntheticConfig()
	cfg.Hosts, cfg.Duration = 5, 3*time.Minute
	a, err := Synthetic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Synthetic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("two runs gave %d and %d records", len(a), len(b))
	}
	seen := map[string]int{}
	hosts := map[string]map[netip.Addr]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("record %d differs between runs with one seed", i)
		}
		if i > 0 && a[i].Flow.StartNs < a[i-1].Flow.StartNs {
			t.Fatalf("record %d out of time order", i)
		}
		seen[a[i].Label]++
		if hosts[a[i].Label] == nil {
			hosts[a[i].Label] = map[netip.Addr]bool{}
		}
		hosts[a[i].Label][a[i].Flow.SrcAddr] = true
	}
	// Within three minutes every default attack but exfiltration's slow
	// start has begun; each family comes from two waves of hosts.
	for _, fam := range []string{Benign, "portscan", "ssh_bruteforce", "ddos", "c2_beacon", "dns_tunnel"} {
		if seen[fam] == 0 {
			t.Errorf("no %s flow in %v", fam, seen)
		}
	}
	if n := len(hosts["portscan"]); n != 2 {
		t.Errorf("portscan from %d hosts, want 2 (two waves)", n)
	}
	cfg.Waves = 0
	if _, err := Synthetic(cfg); err == nil || !strings.Contains(err.Error(), "-synthetic-data.waves") {
		t.Errorf("Synthetic with 0 waves: error = %v, want one naming the flag", err)
	}
}

// sharedDir locates ../shared/datasets relative to this package.
func sharedDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "datasets", name)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("needs ../shared/datasets/%s (absent: %v)", name, err)
	}
	return dir
}

// TestSharedDatasets reads the shared datasets and checks the counts their
// READMEs give.
func TestSharedDatasets(t *testing.T) {
	tests := []struct {
		name, pattern string
		rows          int
		labels        map[string]int
	}{
		{"cicids2017-improved-sampled", "", 35750, map[string]int{"BENIGN": 5000, "DoS Slowloris": 3859, "Web Attack - Brute Force": 73, "Heartbleed": 11}},
		{"stratosphere-ctu50-zeek", "", 24798, map[string]int{"Malicious/External-Attack-to-Device": 14553, "Background": 1353, "Benign": 7030}},
		{"luflow", "2020.07.08.csv.gz", 112755, map[string]int{"benign": 65580, "malicious": 43917, "outlier": 3258}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(sharedDir(t, tc.name), tc.pattern)
			recs, st := mustLoad(t, p)
			if len(recs) != tc.rows || st.Rows != tc.rows || len(st.Rejected) != 0 {
				t.Errorf("read %d records of %d rows, rejected %v; want %d, none rejected", len(recs), st.Rows, st.Rejected, tc.rows)
			}
			for k, v := range tc.labels {
				if st.Labels[k] != v {
					t.Errorf("label %q: %d records, want %d", k, st.Labels[k], v)
				}
			}
		})
	}
}
