package main

import (
	"errors"
	"strings"
	"testing"
)

func TestStoreHint(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{errors.New("tables: create table keys: RESPONSE 403: ERROR CODE: AuthorizationPermissionMismatch"), "Storage Table Data Contributor"},
		{errors.New("DefaultAzureCredential: failed to acquire a token"), "az login"},
		{errors.New("keys create: --team and --app are required"), ""},
	}
	for _, tt := range tests {
		got := storeHint(tt.err)
		if !errors.Is(got, tt.err) {
			t.Errorf("storeHint(%v) lost the error", tt.err)
		}
		if has := strings.Contains(got.Error(), "hint:"); has != (tt.want != "") || !strings.Contains(got.Error(), tt.want) {
			t.Errorf("storeHint(%v) = %q, want a hint mentioning %q", tt.err, got, tt.want)
		}
	}
	if storeHint(nil) != nil {
		t.Error("storeHint(nil) != nil")
	}
}
