// Package integration holds the synthetic traffic generator that the demo,
// `metaids train --synthetic`, `metaids generate` and the end-to-end tests
// share, and (in its tests) the end-to-end checks of the whole pipeline
// over the embedded broker. The generator is ordinary, seeded, non-test
// code: the same seed always yields the same flows, labels and attack times.
//
// Two scenarios:
//
//   - The default scenario (DefaultAttacks over ProfileDefault traffic): the
//     demo's blatant families (port scan, SSH brute force, DDoS, C2 beacon,
//     exfiltration, DNS tunnel), each from a host of its own. Single flows
//     give them away.
//
//   - The sequence scenario (SequenceScenario, DefaultSequenceConfig): 120
//     office hosts (ProfileOffice) for 3 hours per part, about 50,000 to
//     60,000 flows per part, some 3,000 of them attacks. Four of the hosts
//     run each sequence family (SequenceFamilies: slow beacon, slow scan, slow
//     exfiltration, credential stuffing) alongside their normal traffic, so
//     attack flows interleave with benign ones. Every attack flow is drawn
//     from the distribution of a benign kind (poll, failed connection,
//     upload, sign-in) that every host also makes, so no single flow gives
//     an attack away; what does is the host's sequence: a kind of flow far
//     more often than the host's own base rate, to one destination, at
//     regular intervals, or to many destinations in turn. Benign routines
//     (NTP polls, update checks, backups in bursts) make periodicity and
//     repetition by themselves no proof, and short benign sessions made
//     exactly like each family's flows (Sessions: app polling, a sweep of
//     stale addresses, autosave, sign-in retries; 3 to 8 flows) mean that
//     a flow's gap to the host's last flow to the same destination is no
//     proof either: only an attack's persistence is. The train and the
//     test part differ in hosts, in infected hosts and attack parameters,
//     and in time (the test part starts an hour after the train part ends).
//     TestSequenceFamiliesNeedTheSequence checks the claim: a nearest-
//     neighbour classifier on the model's per-flow input (dt_prev,
//     dst_repeat and dt_dst included) finds about half of the families'
//     flows at 1% benign FPR, the same classifier with four host-history
//     statistics nearly all of them.
//
// Writer writes either as flow-log files: Zeek conn.log TSV with
// Stratosphere's label columns and CICFlowMeter CSV with a Label column,
// which `metaids train -data` and `metaids eval -data` read with their
// labels, and the shippers' unlabelled JSON lines (goflow2, nProbe, Zeek
// JSON), which `metaids replay` can ship.
package integration
