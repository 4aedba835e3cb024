package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MetricsConfig shapes the emulated Azure Monitor metrics API
// (POST /subscriptions/{id}/metrics:getBatch, the call of the Azure SDK's
// azmetrics client). It serves one metric, the account's
// AzureOpenAIProvisionedManagedUtilizationV2 split by ModelDeploymentName,
// for the provisioned deployments, computed from the simulator's own load:
// every admitted request (through a gateway or sent directly) plus each
// deployment's BackgroundLoad.
type MetricsConfig struct {
	// Grain the points are computed at when the query asks for none.
	// Default 60s (PT1M, the metric's only grain in Azure).
	Grain Duration `yaml:"grain" json:"grain"`
	// Delay: a grain's point appears only this long after the grain ends,
	// as Azure Monitor ingests platform metrics a minute or more late.
	// Default 60s.
	Delay Duration `yaml:"delay" json:"delay"`
	// Retention: how far back points can be asked for. Default 10m.
	Retention Duration `yaml:"retention" json:"retention"`
}

const (
	metricName      = "AzureOpenAIProvisionedManagedUtilizationV2"
	metricNamespace = "Microsoft.CognitiveServices/accounts"
)

// metricsRequest is the getBatch body.
type metricsRequest struct {
	ResourceIDs []string `json:"resourceids"`
}

type localizable struct {
	Value          string `json:"value"`
	LocalizedValue string `json:"localizedValue"`
}

type metricPoint struct {
	TimeStamp time.Time `json:"timeStamp"`
	Average   *float64  `json:"average,omitempty"`
	Maximum   *float64  `json:"maximum,omitempty"`
}

type metadataValue struct {
	Name  localizable `json:"name"`
	Value string      `json:"value"`
}

type timeSeries struct {
	MetadataValues []metadataValue `json:"metadatavalues"`
	Data           []metricPoint   `json:"data"`
}

type metric struct {
	ID                 string       `json:"id"`
	Type               string       `json:"type"`
	Name               localizable  `json:"name"`
	DisplayDescription string       `json:"displayDescription"`
	Unit               string       `json:"unit"`
	TimeSeries         []timeSeries `json:"timeseries"`
	ErrorCode          string       `json:"errorCode"`
}

type metricData struct {
	StartTime      string   `json:"starttime"`
	EndTime        string   `json:"endtime"`
	Interval       string   `json:"interval"`
	Namespace      string   `json:"namespace"`
	ResourceRegion string   `json:"resourceregion"`
	ResourceID     string   `json:"resourceid"`
	Value          []metric `json:"value"`
}

var filterRE = regexp.MustCompile(`(?i)^\s*ModelDeploymentName\s+eq\s+'([^']*)'\s*$`)

// metricsError writes Azure Monitor's error shape.
func metricsError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// serveMetrics answers a getBatch query for the utilization metric of
// every resource id asked for (the simulator is one account, whatever its id).
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if f := s.metricsFault.Load(); f != nil {
		switch *f {
		case "down":
			metricsError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "The metrics service is unavailable (simulated).")
			return
		case "slow":
			// Read the body first: net/http notices the client leaving
			// only once the body is consumed.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Minute):
				metricsError(w, http.StatusGatewayTimeout, "GatewayTimeout", "The metrics query timed out (simulated).")
			}
			return
		}
	}
	if r.Method != http.MethodPost {
		metricsError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "getBatch takes POST")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		metricsError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "A bearer token is required.")
		return
	}
	q := r.URL.Query()
	if q.Get("api-version") == "" {
		metricsError(w, http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter is required.")
		return
	}
	if !strings.EqualFold(q.Get("metricnamespace"), metricNamespace) {
		metricsError(w, http.StatusBadRequest, "BadRequest", "Unknown metric namespace "+q.Get("metricnamespace"))
		return
	}
	for _, n := range strings.Split(q.Get("metricnames"), ",") {
		if !strings.EqualFold(strings.TrimSpace(n), metricName) {
			metricsError(w, http.StatusBadRequest, "BadRequest", "The simulator serves only "+metricName+", not "+n)
			return
		}
	}
	var body metricsRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil || len(body.ResourceIDs) == 0 {
		metricsError(w, http.StatusBadRequest, "BadRequest", "The body must be {\"resourceids\": [...]}.")
		return
	}
	now := s.clock.Now().UTC()
	grain := s.cfg.Metrics.Grain.D()
	interval := q.Get("interval")
	if interval != "" {
		d, ok := parseISODuration(interval)
		if !ok {
			metricsError(w, http.StatusBadRequest, "BadRequest", "Invalid interval "+interval)
			return
		}
		grain = d
	}
	end, start := now, now.Add(-time.Hour)
	if v := q.Get("endtime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			metricsError(w, http.StatusBadRequest, "BadRequest", "Invalid endtime")
			return
		}
		end = t
	}
	if v := q.Get("starttime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			metricsError(w, http.StatusBadRequest, "BadRequest", "Invalid starttime")
			return
		}
		start = t
	}
	// Only whole grains that ended Delay ago are published.
	if limit := now.Add(-s.cfg.Metrics.Delay.D()); end.After(limit) {
		end = limit
	}
	if oldest := now.Add(-s.cfg.Metrics.Retention.D()); start.Before(oldest) {
		start = oldest
	}
	only := ""
	if f := q.Get("filter"); f != "" {
		m := filterRE.FindStringSubmatch(f)
		if m == nil {
			metricsError(w, http.StatusBadRequest, "BadRequest", "The simulator supports only the filter ModelDeploymentName eq '<name or *>'")
			return
		}
		if m[1] != "*" {
			only = m[1]
		}
	}
	aggs := strings.ToLower(q.Get("aggregation"))
	if aggs == "" {
		aggs = "average"
	}
	var series []timeSeries
	for _, d := range s.cfg.Deployments {
		if !d.Provisioned || (only != "" && d.Name != only) {
			continue
		}
		lim := s.deployments[d.Name].limits
		ts := timeSeries{MetadataValues: []metadataValue{{Name: localizable{"modeldeploymentname", "modeldeploymentname"}, Value: d.Name}}, Data: []metricPoint{}}
		for b := start.Truncate(grain); !b.Add(grain).After(end); b = b.Add(grain) {
			avg, peak := lim.grainStats(b, grain)
			p := metricPoint{TimeStamp: b}
			if strings.Contains(aggs, "average") {
				p.Average = &avg
			}
			if strings.Contains(aggs, "maximum") {
				p.Maximum = &peak
			}
			ts.Data = append(ts.Data, p)
		}
		series = append(series, ts)
	}
	var out struct {
		Values []metricData `json:"values"`
	}
	for _, id := range body.ResourceIDs {
		out.Values = append(out.Values, metricData{StartTime: start.Format(time.RFC3339), EndTime: end.Format(time.RFC3339),
			Interval: isoDuration(grain), Namespace: metricNamespace, ResourceRegion: s.cfg.Region, ResourceID: id,
			Value: []metric{{ID: id + "/providers/Microsoft.Insights/metrics/" + metricName, Type: "Microsoft.Insights/metrics",
				Name:               localizable{metricName, "Provisioned-managed Utilization V2"},
				DisplayDescription: "Utilization % for a provisioned-managed deployment, calculated as (PTUs consumed / PTUs deployed) x 100.",
				Unit:               "Percent", TimeSeries: series, ErrorCode: "Success"}}})
	}
	writeJSON(w, http.StatusOK, out)
}

// parseISODuration reads PT<n>S, PT<n>M or PT<n>H.
func parseISODuration(s string) (time.Duration, bool) {
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "PT")
	if !ok || len(rest) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(rest[:len(rest)-1])
	if err != nil || n <= 0 {
		return 0, false
	}
	unit := map[byte]time.Duration{'S': time.Second, 'M': time.Minute, 'H': time.Hour}[rest[len(rest)-1]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// isoDuration writes d as PT<n>S / PT<n>M / PT<n>H.
func isoDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return "PT" + strconv.Itoa(int(d/time.Hour)) + "H"
	case d%time.Minute == 0:
		return "PT" + strconv.Itoa(int(d/time.Minute)) + "M"
	}
	return "PT" + strconv.Itoa(int(d/time.Second)) + "S"
}
