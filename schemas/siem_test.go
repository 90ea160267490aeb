package schemas

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// lookup follows a dotted path through decoded JSON; numeric parts index
// arrays. Keys that contain dots (none here but "@timestamp") are not split.
func lookup(t *testing.T, doc map[string]any, path string) any {
	t.Helper()
	var cur any = doc
	for _, part := range strings.Split(path, ".") {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[part]
			if !ok {
				return nil
			}
			cur = next
		case []any:
			var i int
			if err := json.Unmarshal([]byte(part), &i); err != nil || i >= len(v) {
				return nil
			}
			cur = v[i]
		default:
			return nil
		}
	}
	return cur
}

func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("rendering is not JSON: %v\n%s", err, b)
	}
	return doc
}

func TestAlertECS(t *testing.T) {
	a := sampleAlert()
	b, err := AlertECS(&a)
	if err != nil {
		t.Fatalf("AlertECS = %v", err)
	}
	doc := decodeJSON(t, b)
	tests := []struct {
		path string
		want any
	}{
		{"@timestamp", "2023-11-14T22:14:20Z"},
		{"ecs.version", ECSVersion},
		{"event.kind", "alert"},
		{"event.category", []any{"network", "intrusion_detection"}},
		{"event.id", a.AlertID},
		{"event.risk_score", 73.0},
		{"event.severity", 4.0},
		{"event.start", "2023-11-14T22:13:20Z"},
		{"event.end", "2023-11-14T22:14:20Z"},
		{"event.duration", 60e9},
		{"source.ip", "10.0.0.9"},
		{"source.port", 51515.0},
		{"destination.ip", "192.0.2.80"},
		{"destination.port", 22.0},
		{"network.transport", "tcp"},
		{"network.iana_number", "6"},
		{"network.type", "ipv4"},
		{"related.ip", []any{"10.0.0.9", "192.0.2.80"}},
		{"rule.name", "portscan"},
		{"rule.version", "7"},
		{"metaids.flow_id", a.FlowID},
		{"metaids.count", 1200.0},
		{"metaids.explanation.0.feature", "dst_port_class"},
	}
	for _, tc := range tests {
		if got := lookup(t, doc, tc.path); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ECS %s = %#v, want %#v", tc.path, got, tc.want)
		}
	}
}

func TestAlertECSAddresses(t *testing.T) {
	tests := []struct {
		name, host, peer       string
		srcIP, dstIP, netType  any
		srcAddress, dstAddress any
	}{
		{"ipv6", "2001:db8::9", "2001:db8::80", "2001:db8::9", "2001:db8::80", "ipv6", "2001:db8::9", "2001:db8::80"},
		{"ipv4-mapped is ipv4", "::ffff:10.0.0.9", "10.0.0.1", "::ffff:10.0.0.9", "10.0.0.1", "ipv4", "::ffff:10.0.0.9", "10.0.0.1"},
		{"host name", "db01.internal", "10.0.0.1", nil, "10.0.0.1", nil, "db01.internal", "10.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := sampleAlert()
			a.Host, a.Peer = tc.host, tc.peer
			b, err := AlertECS(&a)
			if err != nil {
				t.Fatal(err)
			}
			doc := decodeJSON(t, b)
			for path, want := range map[string]any{
				"source.ip": tc.srcIP, "destination.ip": tc.dstIP, "network.type": tc.netType,
				"source.address": tc.srcAddress, "destination.address": tc.dstAddress,
			} {
				if got := lookup(t, doc, path); !reflect.DeepEqual(got, want) {
					t.Errorf("ECS %s = %#v, want %#v", path, got, want)
				}
			}
		})
	}
}

func TestAlertOCSF(t *testing.T) {
	a := sampleAlert()
	a.Host = "2001:db8::9"
	b, err := AlertOCSF(&a)
	if err != nil {
		t.Fatalf("AlertOCSF = %v", err)
	}
	doc := decodeJSON(t, b)
	tests := []struct {
		path string
		want any
	}{
		{"class_uid", 2004.0},
		{"category_uid", 2.0},
		{"activity_id", 1.0},
		{"type_uid", 200401.0},
		{"severity_id", 4.0},
		{"severity", "High"},
		{"time", 1_700_000_060_000.0},
		{"start_time", 1_700_000_000_000.0},
		{"count", 1200.0},
		{"confidence_score", 93.0},
		{"is_alert", true},
		{"metadata.version", OCSFVersion},
		{"metadata.product.name", "metaids"},
		{"finding_info.uid", a.AlertID},
		{"finding_info.title", "metaids: portscan from 2001:db8::9"},
		{"finding_info.types", []any{"portscan"}},
		{"finding_info.analytic.type_id", 4.0},
		{"evidences.0.src_endpoint.ip", "2001:db8::9"},
		{"evidences.0.src_endpoint.port", 51515.0},
		{"evidences.0.dst_endpoint.ip", "192.0.2.80"},
		{"evidences.0.dst_endpoint.port", 22.0},
		{"evidences.0.connection_info.protocol_num", 6.0},
		{"evidences.0.connection_info.protocol_name", "tcp"},
		{"unmapped.anomaly_score", 4.25},
	}
	for _, tc := range tests {
		if got := lookup(t, doc, tc.path); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("OCSF %s = %#v, want %#v", tc.path, got, tc.want)
		}
	}
}

func TestAlertSeverityScale(t *testing.T) {
	tests := []struct {
		severity string
		risk     float64
		id       float64
		name     string
	}{
		{SeverityLow, 21, 2, "Low"},
		{SeverityMedium, 47, 3, "Medium"},
		{SeverityHigh, 73, 4, "High"},
		{SeverityCritical, 99, 5, "Critical"},
		{"bogus", 0, 0, "Unknown"},
	}
	for _, tc := range tests {
		a := sampleAlert()
		a.Severity = tc.severity
		ecs, err := AlertECS(&a)
		if err != nil {
			t.Fatal(err)
		}
		ocsf, err := AlertOCSF(&a)
		if err != nil {
			t.Fatal(err)
		}
		e, o := decodeJSON(t, ecs), decodeJSON(t, ocsf)
		if got := lookup(t, e, "event.risk_score"); got != tc.risk {
			t.Errorf("%s: ECS event.risk_score = %v, want %v", tc.severity, got, tc.risk)
		}
		if got := lookup(t, o, "severity_id"); got != tc.id {
			t.Errorf("%s: OCSF severity_id = %v, want %v", tc.severity, got, tc.id)
		}
		if got := lookup(t, o, "severity"); got != tc.name {
			t.Errorf("%s: OCSF severity = %v, want %v", tc.severity, got, tc.name)
		}
	}
}

func TestAlertRenderingsRejectNaN(t *testing.T) {
	a := sampleAlert()
	a.Probability = float32(math.NaN())
	if _, err := AlertECS(&a); err == nil || !strings.Contains(err.Error(), a.AlertID) {
		t.Errorf("AlertECS(NaN probability) = %v, want an error naming the alert", err)
	}
	if _, err := AlertOCSF(&a); err == nil || !strings.Contains(err.Error(), a.AlertID) {
		t.Errorf("AlertOCSF(NaN probability) = %v, want an error naming the alert", err)
	}
}
