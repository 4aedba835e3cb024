package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"

	"github.com/foundry-gateway/gateway/handlers"
)

// serviceName is what GET /healthz says it is; the CLI looks for it
// before it talks to a running gateway.
const serviceName = "foundry-gateway"

// version and commit are set at build time (make build does):
// go build -ldflags "-X main.version=v1.2.3 -X main.commit=<sha>".
// Without them the module version (a tagged `go install`) or "devel", and
// the build's vcs.revision stamp (absent with -buildvcs=false), are shown.
var version, commit = "", ""

// readBuildInfo is the running binary's version, VCS commit (from the
// build's vcs.revision stamp, "+dirty" when the tree was modified) and Go
// version.
func readBuildInfo() handlers.BuildInfo {
	b := handlers.BuildInfo{Service: serviceName, Version: version, GoVersion: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		b.GoVersion = bi.GoVersion
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && b.Commit != "" {
			b.Commit += "+dirty"
		}
	}
	if commit != "" {
		b.Commit = commit
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

func cmdVersion(_ context.Context, e env, args []string) error {
	fs := newFlagSet("version")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := parseSimple(fs, args, e.stdout, "version [--json]", "version, commit and Go version of this binary"); err != nil {
		return err
	}
	b := readBuildInfo()
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(b)
	}
	commit := b.Commit
	if commit == "" {
		commit = "unknown"
	}
	_, err := fmt.Fprintf(e.stdout, "handler %s (commit %s, %s)\n", b.Version, commit, b.GoVersion)
	return err
}
