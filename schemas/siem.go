package schemas

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// SIEMs ingest JSON in their own schemas, so an alert is also rendered as an
// Elastic Common Schema document (AlertECS) and as an OCSF Detection Finding
// (AlertOCSF). Both treat Alert.Host as the source and Alert.Peer as the
// destination, the direction of the flow that opened the alert, and both put
// what the schema has no field for under a "metaids" object (ECS custom
// fields) or "unmapped" (OCSF).
//
// Severity maps onto both schemas' scales the way Elastic detection rules do:
//
//	severity  ECS event.risk_score  OCSF severity_id
//	low       21                    2 Low
//	medium    47                    3 Medium
//	high      73                    4 High
//	critical  99                    5 Critical

// ECSVersion is the Elastic Common Schema version AlertECS writes.
const ECSVersion = "8.11.0"

// OCSFVersion is the OCSF schema version AlertOCSF writes.
const OCSFVersion = "1.3.0"

// severityScale returns a severity's risk score (0..100) and OCSF id and name.
func severityScale(s string) (risk int, id int, name string) {
	switch s {
	case SeverityLow:
		return 21, 2, "Low"
	case SeverityMedium:
		return 47, 3, "Medium"
	case SeverityHigh:
		return 73, 4, "High"
	case SeverityCritical:
		return 99, 5, "Critical"
	}
	return 0, 0, "Unknown"
}

// protoName is the lower-case IANA keyword ECS network.transport and OCSF
// protocol_name use, or "" for protocols without one here.
func protoName(p int32) string {
	switch p {
	case 1:
		return "icmp"
	case 2:
		return "igmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 47:
		return "gre"
	case 50:
		return "esp"
	case 51:
		return "ah"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	}
	return ""
}

func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

type ecsDoc struct {
	Timestamp   string      `json:"@timestamp"`
	Message     string      `json:"message"`
	ECS         ecsVersion  `json:"ecs"`
	Event       ecsEvent    `json:"event"`
	Source      ecsEndpoint `json:"source"`
	Destination ecsEndpoint `json:"destination"`
	Network     ecsNetwork  `json:"network"`
	Related     ecsRelated  `json:"related"`
	Rule        ecsRule     `json:"rule"`
	Observer    ecsObserver `json:"observer"`
	Metaids     alertExtra  `json:"metaids"`
}

type ecsVersion struct {
	Version string `json:"version"`
}

type ecsEvent struct {
	Kind      string   `json:"kind"`
	Category  []string `json:"category"`
	Type      []string `json:"type"`
	ID        string   `json:"id"`
	Module    string   `json:"module"`
	Dataset   string   `json:"dataset"`
	Severity  int      `json:"severity"`
	RiskScore float64  `json:"risk_score"`
	Start     string   `json:"start"`
	End       string   `json:"end"`
	Duration  int64    `json:"duration"`
}

type ecsEndpoint struct {
	Address string `json:"address,omitempty"`
	IP      string `json:"ip,omitempty"`
	Port    int32  `json:"port,omitempty"`
}

type ecsNetwork struct {
	Transport  string `json:"transport,omitempty"`
	IANANumber string `json:"iana_number"`
	Type       string `json:"type,omitempty"`
}

type ecsRelated struct {
	IP []string `json:"ip,omitempty"`
}

type ecsRule struct {
	Name    string `json:"name"`
	Ruleset string `json:"ruleset"`
	Version string `json:"version"`
}

type ecsObserver struct {
	Vendor  string `json:"vendor"`
	Product string `json:"product"`
	Type    string `json:"type"`
}

// alertExtra holds the alert fields neither schema has a place for.
type alertExtra struct {
	AlertID      string         `json:"alert_id"`
	FlowID       string         `json:"flow_id"`
	Class        string         `json:"class"`
	Probability  float32        `json:"probability"`
	AnomalyScore float32        `json:"anomaly_score"`
	Count        int64          `json:"count"`
	ModelVersion int64          `json:"model_version"`
	Explanation  []contribution `json:"explanation,omitempty"`
}

type contribution struct {
	Feature string  `json:"feature"`
	Value   float32 `json:"value"`
}

func extra(a *Alert) alertExtra {
	x := alertExtra{
		AlertID: a.AlertID, FlowID: a.FlowID, Class: a.Class, Probability: a.Probability,
		AnomalyScore: a.AnomalyScore, Count: a.Count, ModelVersion: a.ModelVersion,
	}
	for _, c := range a.Explanation {
		x.Explanation = append(x.Explanation, contribution{Feature: c.Feature, Value: c.Value})
	}
	return x
}

// summary is the one-line description both renderings carry.
func summary(a *Alert) string {
	return fmt.Sprintf("metaids %s alert: %s from %s to %s port %d, %d flows", a.Severity, a.Class, a.Host, a.Peer, a.DstPort, a.Count)
}

// ipOf parses s as an IP address, reporting whether it is one.
func ipOf(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// AlertECS renders a as an Elastic Common Schema document (event.kind alert,
// event.category network and intrusion_detection). @timestamp is the last
// flow's time, event.start and event.end span the aggregated storm. Host and
// Peer fill source.ip and destination.ip when they parse as addresses, and
// source.address and destination.address always. It fails only for values
// JSON cannot hold, such as a NaN probability.
func AlertECS(a *Alert) ([]byte, error) {
	risk, sevID, _ := severityScale(a.Severity)
	doc := ecsDoc{
		Timestamp: rfc3339(a.LastNs),
		Message:   summary(a),
		ECS:       ecsVersion{Version: ECSVersion},
		Event: ecsEvent{
			Kind:      "alert",
			Category:  []string{"network", "intrusion_detection"},
			Type:      []string{"info"},
			ID:        a.AlertID,
			Module:    "metaids",
			Dataset:   "metaids.alert",
			Severity:  sevID,
			RiskScore: float64(risk),
			Start:     rfc3339(a.FirstNs),
			End:       rfc3339(a.LastNs),
			Duration:  a.LastNs - a.FirstNs,
		},
		Source:      ecsEndpoint{Address: a.Host, Port: a.SrcPort},
		Destination: ecsEndpoint{Address: a.Peer, Port: a.DstPort},
		Network:     ecsNetwork{Transport: protoName(a.Proto), IANANumber: strconv.Itoa(int(a.Proto))},
		Rule:        ecsRule{Name: a.Class, Ruleset: "metaids", Version: strconv.FormatInt(a.ModelVersion, 10)},
		Observer:    ecsObserver{Vendor: "metaids", Product: "metaids", Type: "ids"},
		Metaids:     extra(a),
	}
	if ip, ok := ipOf(a.Host); ok {
		doc.Source.IP = ip.String()
		doc.Related.IP = append(doc.Related.IP, doc.Source.IP)
		doc.Network.Type = "ipv4"
		if ip.Unmap().Is6() {
			doc.Network.Type = "ipv6"
		}
	}
	if ip, ok := ipOf(a.Peer); ok {
		doc.Destination.IP = ip.String()
		doc.Related.IP = append(doc.Related.IP, doc.Destination.IP)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("render alert %s as ecs: %w", a.AlertID, err)
	}
	return b, nil
}

type ocsfFinding struct {
	ActivityID      int             `json:"activity_id"`
	ActivityName    string          `json:"activity_name"`
	CategoryUID     int             `json:"category_uid"`
	CategoryName    string          `json:"category_name"`
	ClassUID        int             `json:"class_uid"`
	ClassName       string          `json:"class_name"`
	TypeUID         int             `json:"type_uid"`
	TypeName        string          `json:"type_name"`
	SeverityID      int             `json:"severity_id"`
	Severity        string          `json:"severity"`
	StatusID        int             `json:"status_id"`
	Status          string          `json:"status"`
	IsAlert         bool            `json:"is_alert"`
	Time            int64           `json:"time"`
	StartTime       int64           `json:"start_time"`
	EndTime         int64           `json:"end_time"`
	Count           int64           `json:"count"`
	Message         string          `json:"message"`
	ConfidenceScore int             `json:"confidence_score"`
	RiskScore       int             `json:"risk_score"`
	Metadata        ocsfMetadata    `json:"metadata"`
	FindingInfo     ocsfFindingInfo `json:"finding_info"`
	Evidences       []ocsfEvidence  `json:"evidences"`
	Unmapped        alertExtra      `json:"unmapped"`
}

type ocsfMetadata struct {
	Version string      `json:"version"`
	UID     string      `json:"uid"`
	Product ocsfProduct `json:"product"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

type ocsfFindingInfo struct {
	UID           string       `json:"uid"`
	Title         string       `json:"title"`
	Desc          string       `json:"desc"`
	Types         []string     `json:"types"`
	FirstSeenTime int64        `json:"first_seen_time"`
	LastSeenTime  int64        `json:"last_seen_time"`
	Analytic      ocsfAnalytic `json:"analytic"`
}

type ocsfAnalytic struct {
	Name    string `json:"name"`
	TypeID  int    `json:"type_id"`
	Type    string `json:"type"`
	Version string `json:"version"`
}

type ocsfEvidence struct {
	SrcEndpoint    ocsfEndpoint       `json:"src_endpoint"`
	DstEndpoint    ocsfEndpoint       `json:"dst_endpoint"`
	ConnectionInfo ocsfConnectionInfo `json:"connection_info"`
}

type ocsfEndpoint struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Port     int32  `json:"port,omitempty"`
}

type ocsfConnectionInfo struct {
	ProtocolNum  int32  `json:"protocol_num"`
	ProtocolName string `json:"protocol_name,omitempty"`
}

func ocsfEndpointOf(host string, port int32) ocsfEndpoint {
	if ip, ok := ipOf(host); ok {
		return ocsfEndpoint{IP: ip.String(), Port: port}
	}
	return ocsfEndpoint{Hostname: host, Port: port}
}

// percent turns a probability into OCSF's 0..100 confidence score.
func percent(p float32) int {
	switch {
	case !(p > 0): // also NaN
		return 0
	case p >= 1:
		return 100
	}
	return int(p*100 + 0.5)
}

// AlertOCSF renders a as an OCSF Detection Finding (class_uid 2004, category
// Findings, activity Create). Times are ms since the epoch, as OCSF wants:
// time is the last flow's, start_time and end_time span the storm. The
// endpoints and protocol go in evidences[0], where OCSF 1.1 and later keep
// the network details of a finding. It fails only for values JSON cannot
// hold, such as a NaN probability.
func AlertOCSF(a *Alert) ([]byte, error) {
	risk, sevID, sevName := severityScale(a.Severity)
	const activity, class = 1, 2004
	ms := func(ns int64) int64 { return ns / int64(time.Millisecond) }
	f := ocsfFinding{
		ActivityID:      activity,
		ActivityName:    "Create",
		CategoryUID:     2,
		CategoryName:    "Findings",
		ClassUID:        class,
		ClassName:       "Detection Finding",
		TypeUID:         class*100 + activity,
		TypeName:        "Detection Finding: Create",
		SeverityID:      sevID,
		Severity:        sevName,
		StatusID:        1,
		Status:          "New",
		IsAlert:         true,
		Time:            ms(a.LastNs),
		StartTime:       ms(a.FirstNs),
		EndTime:         ms(a.LastNs),
		Count:           a.Count,
		Message:         summary(a),
		ConfidenceScore: percent(a.Probability),
		RiskScore:       risk,
		Metadata: ocsfMetadata{
			Version: OCSFVersion,
			UID:     a.AlertID,
			Product: ocsfProduct{Name: "metaids", VendorName: "metaids"},
		},
		FindingInfo: ocsfFindingInfo{
			UID:           a.AlertID,
			Title:         fmt.Sprintf("metaids: %s from %s", a.Class, a.Host),
			Desc:          summary(a),
			Types:         []string{a.Class},
			FirstSeenTime: ms(a.FirstNs),
			LastSeenTime:  ms(a.LastNs),
			Analytic: ocsfAnalytic{
				Name:    "metaids",
				TypeID:  4,
				Type:    "Learning (ML/DL)",
				Version: strconv.FormatInt(a.ModelVersion, 10),
			},
		},
		Evidences: []ocsfEvidence{{
			SrcEndpoint:    ocsfEndpointOf(a.Host, a.SrcPort),
			DstEndpoint:    ocsfEndpointOf(a.Peer, a.DstPort),
			ConnectionInfo: ocsfConnectionInfo{ProtocolNum: a.Proto, ProtocolName: protoName(a.Proto)},
		}},
		Unmapped: extra(a),
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("render alert %s as ocsf: %w", a.AlertID, err)
	}
	return b, nil
}
