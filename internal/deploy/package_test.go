package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
)

func TestPackageLayout(t *testing.T) {
	dir := t.TempDir()
	opts := packageOptions(t, dir)
	if err := Package(opts); err != nil {
		t.Fatal(err)
	}
	t.Logf("go build of the handler took %v", buildTime)
	if err := Check(opts.Out); err != nil {
		t.Fatalf("Check of a fresh package: %v", err)
	}

	// Expected entries, from the repository itself: host.json, every
	// function.json, the handler and the config.
	want := map[string]string{ // zip name -> source file
		HostFile:    filepath.Join(opts.Root, HostFile),
		HandlerFile: opts.Binary,
		ConfigFile:  opts.Config,
	}
	fns, err := filepath.Glob(filepath.Join(opts.Root, FunctionsDir, "*", FunctionFile))
	if err != nil || len(fns) == 0 {
		t.Fatalf("no function.json in the repo (%v)", err)
	}
	// The repo keeps functions/<name>/function.json; the zip has
	// <name>/function.json at its root, where the host looks.
	for _, f := range fns {
		want[filepath.Base(filepath.Dir(f))+"/"+FunctionFile] = f
	}
	for _, fn := range []string{"gateway", "drain", "rollup"} {
		if _, ok := want[fn+"/"+FunctionFile]; !ok {
			t.Errorf("no %s/%s at the zip root", fn, FunctionFile)
		}
	}
	var wantNames []string
	for n := range want {
		wantNames = append(wantNames, n)
	}
	sort.Strings(wantNames)

	files := readZip(t, opts.Out)
	var gotNames []string
	for _, f := range files {
		gotNames = append(gotNames, f.name)
	}
	if strings.Join(gotNames, " ") != strings.Join(wantNames, " ") {
		t.Fatalf("entries (in zip order)\n got %v\nwant %v", gotNames, wantNames)
	}
	for _, f := range files {
		src, err := os.ReadFile(want[f.name])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.data, src) {
			t.Errorf("%s: content differs from %s", f.name, want[f.name])
		}
		wantMode := os.FileMode(0o644)
		if f.name == HandlerFile {
			wantMode = 0o755
		}
		if f.mode != wantMode {
			t.Errorf("%s: mode %v, want %v", f.name, f.mode, wantMode)
		}
	}

	// Same inputs, same bytes.
	again := opts
	again.Out = filepath.Join(dir, "again", "gateway.zip")
	if err := Package(again); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(opts.Out)
	b, _ := os.ReadFile(again.Out)
	if !bytes.Equal(a, b) {
		t.Error("two packages of the same inputs differ")
	}
}

// The package's file names are what the rest of the repo expects.
func TestPackageNamesMatchRepo(t *testing.T) {
	if ConfigFile != config.DefaultConfigFile {
		t.Errorf("ConfigFile %q, config.DefaultConfigFile %q: serve would not find the shipped config", ConfigFile, config.DefaultConfigFile)
	}
	host, err := os.ReadFile(filepath.Join(repoRoot(t), HostFile))
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkHost(host, nil); len(errs) > 0 {
		t.Errorf("repo host.json: %v", errs)
	}
}

func TestPackageErrors(t *testing.T) {
	dir := t.TempDir()
	root := repoRoot(t)
	noFunctions := t.TempDir()
	if err := os.WriteFile(filepath.Join(noFunctions, HostFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyFn := t.TempDir()
	if err := os.MkdirAll(filepath.Join(emptyFn, FunctionsDir, "orphan"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(emptyFn, HostFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, "infra", "config", "azure.yaml")
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no binary option", Options{Root: root, Config: cfg, Out: filepath.Join(dir, "a.zip")}, "Binary"},
		{"binary missing", Options{Root: root, Binary: filepath.Join(dir, "nope"), Config: cfg, Out: filepath.Join(dir, "b.zip")}, "handler"},
		{"no functions dir", Options{Root: noFunctions, Binary: cfg, Config: cfg, Out: filepath.Join(dir, "c.zip")}, "functions"},
		{"function folder without function.json", Options{Root: emptyFn, Binary: cfg, Config: cfg, Out: filepath.Join(dir, "d.zip")}, "orphan has no function.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Package(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Package: %v, want an error containing %q", err, tt.want)
			}
			if _, serr := os.Stat(tt.opts.Out); serr == nil {
				t.Errorf("%s written despite the error", tt.opts.Out)
			}
		})
	}
}

// TestCheckRejects breaks a valid package in one way per case and expects
// Check to name the problem.
func TestCheckRejects(t *testing.T) {
	dir := t.TempDir()
	opts := packageOptions(t, dir)
	if err := Package(opts); err != nil {
		t.Fatal(err)
	}
	good := readZip(t, opts.Out)

	const gatewayFn = "gateway/function.json"
	const drainFn = "drain/function.json"
	replace := func(name, content string) func(*testing.T, []zipFile) []zipFile {
		return func(t *testing.T, fs []zipFile) []zipFile {
			for i := range fs {
				if fs[i].name == name {
					fs[i].data = []byte(content)
				}
			}
			return fs
		}
	}
	edit := func(name, old, repl string) func(*testing.T, []zipFile) []zipFile {
		return func(t *testing.T, fs []zipFile) []zipFile {
			for i := range fs {
				if fs[i].name == name {
					if !bytes.Contains(fs[i].data, []byte(old)) {
						t.Fatalf("%s does not contain %q", name, old)
					}
					fs[i].data = bytes.Replace(fs[i].data, []byte(old), []byte(repl), 1)
				}
			}
			return fs
		}
	}
	drop := func(pred func(string) bool) func(*testing.T, []zipFile) []zipFile {
		return func(t *testing.T, fs []zipFile) []zipFile {
			var out []zipFile
			for _, f := range fs {
				if !pred(f.name) {
					out = append(out, f)
				}
			}
			return out
		}
	}
	rename := func(from, to string) func(*testing.T, []zipFile) []zipFile {
		return func(t *testing.T, fs []zipFile) []zipFile {
			for i := range fs {
				if fs[i].name == from {
					fs[i].name = to
				}
			}
			return fs
		}
	}
	nest := func(t *testing.T, fs []zipFile) []zipFile {
		for i := range fs {
			if isFunctionFile(fs[i].name) {
				fs[i].name = FunctionsDir + "/" + fs[i].name
			}
		}
		return fs
	}
	// small also swaps the handler for a few bytes: for layout cases, whose
	// message does not depend on it, and which are then cheap under -race.
	small := func(m func(*testing.T, []zipFile) []zipFile) func(*testing.T, []zipFile) []zipFile {
		return func(t *testing.T, fs []zipFile) []zipFile {
			for i := range fs {
				if fs[i].name == HandlerFile {
					fs[i].data = []byte("\x7fELF")
				}
			}
			return m(t, fs)
		}
	}
	add := func(name, content string) func(*testing.T, []zipFile) []zipFile {
		return func(t *testing.T, fs []zipFile) []zipFile {
			return append(fs, zipFile{name: name, mode: 0o644, unix: true, data: []byte(content)})
		}
	}
	handler := func(change func(*zipFile)) func(*testing.T, []zipFile) []zipFile {
		return func(t *testing.T, fs []zipFile) []zipFile {
			for i := range fs {
				if fs[i].name == HandlerFile {
					change(&fs[i])
				}
			}
			return fs
		}
	}
	appendTo := func(name, extra string) func(*testing.T, []zipFile) []zipFile {
		return func(t *testing.T, fs []zipFile) []zipFile {
			for i := range fs {
				if fs[i].name == name {
					fs[i].data = append(append([]byte{}, fs[i].data...), extra...)
				}
			}
			return fs
		}
	}

	tests := []struct {
		name   string
		mutate func(*testing.T, []zipFile) []zipFile
		want   string
	}{
		{"missing every function.json", drop(func(n string) bool { return strings.HasSuffix(n, FunctionFile) }), "would index zero functions"},
		{"nested layout (functions/<name>/function.json)", small(nest), "would index zero functions"},
		{"nested layout names the folder", small(nest), "functions/gateway/function.json: nested function folder"},
		{"one function nested", small(rename(drainFn, "fns/"+drainFn)), "fns/drain/function.json: nested function folder"},
		{"function named host", small(rename(drainFn, "host/function.json")), `"host" is not a valid function name`},
		{"function named HOST", small(rename(drainFn, "HOST/function.json")), `"HOST" is not a valid function name`},
		{"function name starting with a digit", small(rename(drainFn, "1drain/function.json")), `"1drain" is not a valid function name`},
		{"function name with a dot", small(rename(drainFn, "drain.v2/function.json")), `"drain.v2" is not a valid function name`},
		{"function name of 129 characters", small(rename(drainFn, "d"+strings.Repeat("x", 128)+"/function.json")), "is not a valid function name"},
		{"function.json without bindings", small(replace(drainFn, `{"bindings": []}`)), "no bindings"},
		{"function.json without a bindings key", small(replace(drainFn, `{}`)), "no bindings"},
		{"missing handler", drop(func(n string) bool { return n == HandlerFile }), "handler: missing"},
		{"missing the HTTP function.json", drop(func(n string) bool { return n == gatewayFn }), "no HTTP-triggered function"},
		{"missing host.json", drop(func(n string) bool { return n == HostFile }), "host.json: missing"},
		{"missing gateway.yaml", drop(func(n string) bool { return n == ConfigFile }), "gateway.yaml: missing"},
		{"handler without exec bit", handler(func(f *zipFile) { f.mode = 0o644 }), "handler: not executable"},
		{"handler without unix mode", handler(func(f *zipFile) { f.unix = false }), "without Unix permissions"},
		{"handler not ELF", handler(func(f *zipFile) { f.data = []byte("#!/bin/sh\nexit 0\n") }), "not an ELF executable"},
		{"handler holds the azurite key", handler(func(f *zipFile) { f.data = append(append([]byte{}, f.data...), azuriteAccountKey()...) }), "Azurite development account key"},
		{"host.json without proxying", edit(HostFile, `"enableProxyingHttpRequest": true`, `"enableProxyingHttpRequest": false`), "enableProxyingHttpRequest must be true"},
		{"host.json with api route prefix", edit(HostFile, `"routePrefix": ""`, `"routePrefix": "api"`), `routePrefix is "api"`},
		{"host.json wrong executable", edit(HostFile, `"defaultExecutablePath": "handler"`, `"defaultExecutablePath": "handler.exe"`), "defaultExecutablePath"},
		{"host.json version 1", edit(HostFile, `"version": "2.0"`, `"version": "1.0"`), `version "1.0"`},
		{"function.json with two http outputs", replace(gatewayFn, `{"bindings":[
			{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","route":"{*path}"},
			{"type":"http","direction":"out","name":"res"},
			{"type":"http","direction":"out","name":"res2"}]}`), "2 http outputs"},
		{"http function with a queue output", replace(gatewayFn, `{"bindings":[
			{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous","route":"{*path}"},
			{"type":"http","direction":"out","name":"res"},
			{"type":"serviceBus","direction":"out","name":"q","queueName":"lowpri","connection":"ServiceBusConnection"}]}`), "1 other bindings"},
		{"bad auth level", edit(gatewayFn, `"anonymous"`, `"public"`), `authLevel "public"`},
		{"cron with five fields", edit(drainFn, `"*/10 * * * * *"`, `"*/10 * * * *"`), "5 fields, want 6"},
		{"cron day of week out of range", edit(drainFn, `"*/10 * * * * *"`, `"*/10 * * * * 7"`), "day-of-week field"},
		{"cron bad step", edit(drainFn, `"*/10 * * * * *"`, `"*/0 * * * * *"`), "step"},
		{"function.json not JSON", replace(drainFn, `{"bindings": [`), drainFn},
		{"function with two triggers", replace(drainFn, `{"bindings":[
			{"type":"timerTrigger","direction":"in","name":"a","schedule":"0 * * * * *"},
			{"type":"timerTrigger","direction":"in","name":"b","schedule":"0 * * * * *"}]}`), "2 trigger bindings"},
		{"account key in config", appendTo(ConfigFile, "\n# AccountKey=abcdefghijklmnopqrstuvwxyz0123456789==\n"), "storage account key"},
		{"openai key in config", appendTo(ConfigFile, "\n# sk-proj-abcdefghijklmnopqrstuvwxyz012345\n"), "OpenAI-style secret key"},
		{"jwt in host.json", edit(HostFile, `"Information"`, `"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"`), "JSON web token"},
		{"azurite key in config", appendTo(ConfigFile, "\n# "+azuriteAccountKey()+"\n"), "Azurite development account key"},
		{"local.settings.json shipped", add("local.settings.json", `{"IsEncrypted": false}`), "local.settings.json is for Core Tools only"},
		{"unexpected file", add("README.md", "hi"), "README.md: unexpected file"},
		{"unsafe path", add("../evil", "x"), "unsafe path"},
		{"extra file in a function folder", add("gateway/index.js", "x"), "a function folder holds only function.json"},
		{"folder without function.json", small(add("functions/README.md", "x")), "functions/README.md: unexpected file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := make([]zipFile, len(good))
			copy(files, good)
			p := filepath.Join(t.TempDir(), "broken.zip")
			writeZip(t, p, tt.mutate(t, files))
			err := Check(p)
			if err == nil {
				t.Fatalf("Check accepted a package with %s", tt.name)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check error does not mention %q:\n%v", tt.want, err)
			}
		})
	}
}

func TestCheckNCRONTAB(t *testing.T) {
	tests := []struct {
		schedule string
		ok       bool
	}{
		{"0 */5 * * * *", true},
		{"*/10 * * * * *", true},
		{"0 30 9 * * 1-5", true},
		{"0 0 0 1 JAN,jul SUN", true},
		{"0 0 */2 1-15/3 * *", true},
		{"5/15 * * * * *", true},
		{"0 */5 * * *", false},
		{"0 */5 * * * * *", false},
		{"60 * * * * *", false},
		{"0 0 24 * * *", false},
		{"0 0 0 0 * *", false},
		{"0 0 0 * 13 *", false},
		{"0 0 0 * * 7", false},
		{"0 10-5 * * * *", false},
		{"0 */x * * * *", false},
		{"0 * * * FOO *", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.schedule, func(t *testing.T) {
			err := checkNCRONTAB(tt.schedule)
			if (err == nil) != tt.ok {
				t.Fatalf("checkNCRONTAB(%q) = %v, want ok=%v", tt.schedule, err, tt.ok)
			}
		})
	}
}

func TestScanSecrets(t *testing.T) {
	tests := []struct {
		name, text string
		want       string // "" means clean
	}{
		{"api key env name", "auth: { apiKeyEnv: SWC_KEY }", ""},
		{"managed identity", "auth: { managedIdentity: true }\nclientIdEnv: AZURE_CLIENT_ID", ""},
		{"placeholder key", "AccountKey=<azurite well-known dev key>;", ""},
		{"env reference", "url: ${FOUNDRY_ENDPOINT}\nkeyCacheTTL: 30s", ""},
		{"aad auth string", "ClientId=00000000-0000-0000-0000-000000000000;Authorization=AAD", ""},
		{"key vault reference", "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/swc-key/)", ""},
		{"bicep credential setting", "name: 'AzureWebJobsStorage__credential'\nvalue: 'managedidentity'", ""},
		{"account key", "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abcdefghijklmnopqrstuvwx==", "storage account key"},
		{"service bus key", "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=abcdefghijklmnop=", "shared access key"},
		{"sas", "https://x.blob.core.windows.net/c/b?sv=2022-11-02&sig=abcdefghijklmnopqrstuvwxyz%3D", "shared access signature"},
		{"api key value", `"api-key": "0123456789abcdef0123456789abcdef"`, "api key"},
		{"openai key", "OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz123456", "OpenAI-style secret key"},
		{"jwt", "Bearer eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL3gifQ.c2lnbmF0dXJlc2lnbmF0dXJl", "JSON web token"},
		{"private key", "-----BEGIN RSA PRIVATE KEY-----", "private key"},
		{"base64 after a key name", "signingKey: q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ==", "long base64 value"},
		{"instrumentation key", "InstrumentationKey=8b3c5e2a-1234-4cde-9f00-112233445566;", "instrumentation key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := scanSecrets("f", []byte(tt.text))
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Fatalf("false positive: %v", errs)
			case tt.want != "" && len(errs) == 0:
				t.Fatalf("missed a %s", tt.want)
			case tt.want != "" && !strings.Contains(errs[0].Error(), tt.want):
				t.Fatalf("got %v, want %q", errs, tt.want)
			}
		})
	}
}

// TestValidFunctionName follows the host's Utility.IsValidFunctionName
// regex, ^[a-z][a-z0-9_\-]{0,127}$(?<!^host$) with IgnoreCase.
func TestValidFunctionName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"gateway", true},
		{"Drain", true},
		{"r", true},
		{"roll_up-2", true},
		{"a" + strings.Repeat("b", 127), true},
		{"a" + strings.Repeat("b", 128), false},
		{"", false},
		{"host", false},
		{"Host", false},
		{"hosts", true},
		{"myhost", true},
		{"_drain", false},
		{"-drain", false},
		{"9drain", false},
		{"drain.v2", false},
		{"drain v2", false},
		{"drain/x", false},
		{"dräin", false},
	}
	for _, tt := range tests {
		if got := ValidFunctionName(tt.name); got != tt.ok {
			t.Errorf("ValidFunctionName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestScheduleNext(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		sched, after, want string
	}{
		{"*/10 * * * * *", "2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z"},
		{"*/10 * * * * *", "2026-01-01T00:00:07.5Z", "2026-01-01T00:00:10Z"},
		{"0 */5 * * * *", "2026-01-01T00:04:59Z", "2026-01-01T00:05:00Z"},
		{"0 */5 * * * *", "2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"},
		{"30 0 9 * * MON-FRI", "2026-01-02T10:00:00Z", "2026-01-05T09:00:30Z"}, // Friday after 9 -> Monday
		{"0 0 0 1 JAN *", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"5/20 * * * * *", "2026-01-01T00:00:06Z", "2026-01-01T00:00:25Z"},
		{"0 0 0 31 2 *", "2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		s, err := ParseNCRONTAB(tt.sched)
		if err != nil {
			t.Fatalf("%s: %v", tt.sched, err)
		}
		if got := s.Next(at(tt.after)); !got.Equal(at(tt.want)) {
			t.Errorf("%q after %s: %s, want %s", tt.sched, tt.after, got.Format(time.RFC3339), tt.want)
		}
	}
}
