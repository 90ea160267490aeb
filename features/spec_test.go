package features

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// specHash is the hash of the spec at SpecVersion. If this test fails you
// changed the feature spec: bump SpecVersion, update the hash here, and
// retrain, since every existing model's inputs just changed meaning.
const specHash = "7155b9da337dddca"

func TestSpecHashGolden(t *testing.T) {
	if got := Default().Hash(); got != specHash {
		t.Errorf("Default().Hash() = %s, want %s (changed the spec? bump SpecVersion and update specHash)", got, specHash)
	}
}

func TestSpec(t *testing.T) {
	s := Default()
	if s.Len() != NumFeatures {
		t.Fatalf("Len() = %d, want %d", s.Len(), NumFeatures)
	}
	if s.Version() != SpecVersion {
		t.Errorf("Version() = %d, want %d", s.Version(), SpecVersion)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(s.Hash()) {
		t.Errorf("Hash() = %q, want 16 hex digits", s.Hash())
	}
	if s.Feature(IdxDeltaT).Name != "dt_prev" {
		t.Errorf("Feature(IdxDeltaT).Name = %q, want dt_prev", s.Feature(IdxDeltaT).Name)
	}
	seen := map[string]bool{}
	for j, name := range s.Names() {
		if name == "" || seen[name] {
			t.Errorf("feature %d name %q: empty or duplicate", j, name)
		}
		seen[name] = true
		if i, ok := s.Index(name); !ok || i != j {
			t.Errorf("Index(%q) = %d, %v; want %d, true", name, i, ok, j)
		}
		if s.Feature(j).Def == "" {
			t.Errorf("feature %q has no definition", name)
		}
		// Address identity must never be an input: the model would learn
		// hosts, not behaviour. Address classes are fine.
		for _, banned := range []string{"addr", "ip", "host", "peer", "port_num"} {
			if strings.Contains(name, banned) {
				t.Errorf("feature %q looks like an identity feature (%q)", name, banned)
			}
		}
	}
	if _, ok := s.Index("no_such_feature"); ok {
		t.Errorf("Index(no_such_feature) ok = true, want false")
	}
	// Names returns a copy: changing it must not change the spec.
	names := s.Names()
	names[0] = "mutated"
	if Default().Feature(0).Name == "mutated" {
		t.Errorf("Names() exposes the spec's storage")
	}
}

func TestAttackerControlled(t *testing.T) {
	s := Default()
	var got []string
	for _, j := range s.AttackerControlled() {
		got = append(got, s.Feature(j).Name)
	}
	want := []string{
		"log_bytes_out", "log_pkts_out", "log_duration_ms", "log_bpp_out", "bytes_in_frac", "pkts_in_frac",
		"log_pkt_rate", "src_port_ephemeral", "tcp_fin", "tcp_syn", "tcp_rst", "tcp_psh", "tcp_ack", "tcp_urg", "dt_prev", "dt_dst",
	}
	if !slices.Equal(got, want) {
		t.Errorf("AttackerControlled() = %v, want %v", got, want)
	}
	// What the responder or the network decides is never the attacker's.
	for _, name := range []string{"log_bytes_in", "log_pkts_in", "no_response", "src_internal", "dst_internal", "proto_tcp", "dst_svc_web"} {
		j, _ := s.Index(name)
		if s.Feature(j).AttackerControlled {
			t.Errorf("%s is marked attacker-controlled", name)
		}
	}
}

// TestHashCoversDefinitions checks that the hash changes when a definition,
// a name or the version changes.
func TestHashCoversDefinitions(t *testing.T) {
	base := Default()
	mutate := func(f func(feats []Feature) int) string {
		feats := slices.Clone(defaultFeatures[:])
		v := f(feats)
		s := Spec{version: v, features: feats}
		return s.computeHash()
	}
	if h := mutate(func([]Feature) int { return SpecVersion }); h != base.Hash() {
		t.Fatalf("hash of an unchanged copy = %s, want %s", h, base.Hash())
	}
	for name, f := range map[string]func([]Feature) int{
		"version":    func([]Feature) int { return SpecVersion + 1 },
		"name":       func(fs []Feature) int { fs[3].Name = "x"; return SpecVersion },
		"definition": func(fs []Feature) int { fs[idxSvcWeb].Def += ",8000"; return SpecVersion },
		"order":      func(fs []Feature) int { fs[0], fs[1] = fs[1], fs[0]; return SpecVersion },
	} {
		if h := mutate(f); h == base.Hash() {
			t.Errorf("changing the %s left the hash at %s", name, h)
		}
	}
}
