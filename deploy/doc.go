// Package deploy holds what operators install beside the binary, and its tests (test only):
// the Grafana dashboard (grafana/stepflow.json), whose every query is run against a real
// Prometheus scraping a real stepflow server; the Prometheus alert rules
// (prometheus/rules.yaml) with their promtool unit tests; and the systemd unit of the server
// (systemd/stepflow.service), checked by systemd-analyze.
package deploy
