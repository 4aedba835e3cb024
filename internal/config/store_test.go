package config

import (
	"strings"
	"testing"
)

// TestStoreOnlyLoadNeedsOnlyTheTableSettings is the first hour in Azure:
// the operator commands load the deployed config with nothing but the
// table endpoint set, while the full load needs the backend and Service
// Bus settings too.
func TestStoreOnlyLoadNeedsOnlyTheTableSettings(t *testing.T) {
	env := map[string]string{"GatewayTables__tableServiceUri": "https://acct.table.core.windows.net"}
	path := repoFile(t, "infra/config/azure.yaml")
	c, err := LoadStoreFile(path, envMap(env))
	if err != nil {
		t.Fatalf("LoadStoreFile with only the table endpoint: %v", err)
	}
	if c.Store.Kind != StoreAzureTables || c.Store.ServiceURL != env["GatewayTables__tableServiceUri"] || c.Store.ClientID != "" {
		t.Errorf("store %+v, want azure-tables at the service URL with no client id (DefaultAzureCredential)", c.Store)
	}
	if _, ok := c.Models["gpt-4o-mini"]; !ok {
		t.Errorf("models %v, want the file's aliases (keys create --models checks them)", c.Models)
	}
	if _, err := LoadFile(path, envMap(env)); err == nil || !strings.Contains(err.Error(), "FOUNDRY_ENDPOINT") {
		t.Errorf("full LoadFile with only the table endpoint: got %v, want it to name FOUNDRY_ENDPOINT", err)
	}
}

func TestParseStore(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		wantErr string
	}{
		{"embedded default", `backends: [{name: b, url: "${UNSET}"}]`, nil, ""},
		{"connection string", `store: {kind: azure-tables, connection: T}`, map[string]string{"T": "DefaultEndpointsProtocol=http;AccountName=a"}, ""},
		{"missing table endpoint", `store: {kind: azure-tables}`, nil, "GatewayTables__tableServiceUri"},
		{"unset variable inside store", `store: {kind: azure-tables, tablePrefix: "${PREFIX}"}`, map[string]string{"GatewayTables": "x"}, "PREFIX"},
		{"unknown store field", `store: {kind: embedded, bogus: 1}`, nil, "bogus"},
		{"bad kind", `store: {kind: cosmos}`, nil, "store.kind"},
		{"other credential", `store: {kind: azure-tables}`, map[string]string{"GatewayTables__tableServiceUri": "https://a", "GatewayTables__credential": "secret"}, "managedidentity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseStore([]byte(tt.yaml), envMap(tt.env))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestBlobAndClaimCheckSettings(t *testing.T) {
	base := "backends: [{name: b, url: \"http://h\", auth: {none: true}}]\nmodels: {m: {targets: [{backend: b}]}}\n"
	c, err := Parse([]byte(base), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Blob.Kind != BlobEmbedded || c.Blob.Path != "./data/blobs" || c.Jobs.ClaimCheckBytes != 192<<10 || c.Jobs.BodyContainer != "job-bodies" {
		t.Errorf("defaults: blob %+v, claimCheckBytes %d, bodyContainer %q", c.Blob, c.Jobs.ClaimCheckBytes, c.Jobs.BodyContainer)
	}
	c, err = Parse([]byte(base+"blob: {kind: azure-blob}\n"), envMap(map[string]string{
		"GatewayBlobs__blobServiceUri": "https://a.blob.core.windows.net", "GatewayBlobs__clientId": "cid"}))
	if err != nil || c.Blob.ServiceURL != "https://a.blob.core.windows.net" || c.Blob.ClientID != "cid" {
		t.Errorf("azure-blob with managed identity: %+v, %v", c.Blob, err)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"blob: {kind: azure-blob}\n", "GatewayBlobs__blobServiceUri"},
		{"blob: {kind: s3}\n", "blob.kind"},
		{"jobs: {claimCheckBytes: 300000}\n", "claimCheckBytes"},
	} {
		if _, err := Parse([]byte(base+bad.yaml), envMap(nil)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want an error naming %s", bad.yaml, err, bad.want)
		}
	}
}
