package telemetry

import (
	"errors"
	"strings"
)

// defaultIngestion is the global endpoint used when a connection string
// names none (old instrumentation-key-only strings).
const defaultIngestion = "https://dc.services.visualstudio.com/"

// ParseConnectionString reads the instrumentation key and ingestion
// endpoint from an APPLICATIONINSIGHTS_CONNECTION_STRING
// ("InstrumentationKey=…;IngestionEndpoint=https://…/;…"). Keys are
// case-insensitive; the track URL is <IngestionEndpoint>v2/track.
func ParseConnectionString(cs string) (ikey, trackURL string, err error) {
	endpoint := ""
	for _, part := range strings.Split(cs, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "instrumentationkey":
			ikey = strings.TrimSpace(v)
		case "ingestionendpoint":
			endpoint = strings.TrimSpace(v)
		}
	}
	if ikey == "" {
		return "", "", errors.New("telemetry: connection string has no InstrumentationKey")
	}
	if endpoint == "" {
		endpoint = defaultIngestion
	}
	if !strings.HasSuffix(endpoint, "/") {
		endpoint += "/"
	}
	return ikey, endpoint + "v2/track", nil
}
